"""Who is asking: a signed-in official (session cookie or bearer token), or nobody."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..engine import accounts, db
from ..engine.errors import Unauthenticated
from ..engine.models import User

bp = Blueprint("auth", __name__)


def _actor_from_bearer():
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    with db.read_only() as s:
        user = accounts.user_for_token(s, header[7:].strip())
        if user is None:
            raise Unauthenticated("mã truy cập không hợp lệ hoặc đã hết hạn (invalid or expired token)")
        return accounts.actor_for(s, user)


def current_actor():
    """The signed-in official of this request, or None (citizens have no account)."""
    if "actor" in g:
        return g.actor
    actor = None
    if request.blueprint in ("api", "dev"):
        actor = _actor_from_bearer()
    if actor is None and session.get("user_id"):
        with db.read_only() as s:
            user = s.get(User, session["user_id"])
            if user is not None and user.is_active and session.get("pw") == user.password_hash[-16:]:
                actor = accounts.actor_for(s, user)
            else:
                session.clear()
    g.actor = actor
    return actor


def require_actor():
    actor = current_actor()
    if actor is None:
        raise Unauthenticated("cần đăng nhập (authentication required)")
    return actor


def login_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_actor() is None:
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)
    return wrapped


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("tasks.inbox")


@bp.route("/dang-nhap", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()[:64]
        password = request.form.get("password") or ""
        with db.read_only() as s:
            user = accounts.authenticate(s, username, password)
            if user is not None:
                session.clear()
                session["user_id"] = user.id
                # Changing the password ends every session signed with the old one.
                session["pw"] = user.password_hash[-16:]
                session.permanent = False
                return redirect(_safe_next(request.args.get("next")))
        error = _("Sai tên đăng nhập hoặc mật khẩu.")
        return render_template("auth/login.html", error=error, username=username), 401
    return render_template("auth/login.html", error=None, username="")


@bp.route("/dang-xuat", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("portal.home"))
