"""Who is asking: a signed-in official (session cookie or bearer token), or nobody."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from sqlalchemy import select

from ..engine import accounts, db
from ..engine.errors import Unauthenticated
from ..engine.models import User
from .limits import limiter, sign_in_limit
from .policy import policy

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
            if (user is not None and user.is_active and session.get("pw") == user.password_hash[-16:]
                    and session.get("epoch") == user.session_epoch):
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
@policy("public")
@limiter.shared_limit(sign_in_limit, scope="sign-in", methods=['POST'])
def login():
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()[:64]
        password = (request.form.get("password") or "")[:256]
        try:
            user_id = accounts.sign_in(username, password)
            with db.read_only() as s:
                user = s.get(User, user_id)
                session.clear()
                session["user_id"] = user.id
                # Changing the password, or "sign out everywhere", ends every older session.
                session["pw"] = user.password_hash[-16:]
                session["epoch"] = user.session_epoch
                session.permanent = False
            return redirect(_safe_next(request.args.get("next")))
        except accounts.SignInRefused as refused:
            if refused.locked_until is not None:
                error = _("Tài khoản tạm khóa do đăng nhập sai nhiều lần; hãy thử lại sau %(when)s.",
                          when=format_local(refused.locked_until))
                return render_template("auth/login.html", error=error, username=username), 429
        error = _("Sai tên đăng nhập hoặc mật khẩu.")
        return render_template("auth/login.html", error=error, username=username), 401
    return render_template("auth/login.html", error=None, username="")


@bp.route("/dang-xuat", methods=["POST"])
@policy("public")
def logout():
    session.clear()
    return redirect(url_for("portal.home"))


@bp.route("/dang-xuat-moi-noi", methods=["POST"])
@policy("official")
@login_required
def logout_everywhere():
    """End every session and API token of this account (a lost phone, a shared computer)."""
    actor = require_actor()
    with db.transaction() as s:
        user = s.execute(select(User).where(User.username == actor.username)).scalar_one()
        accounts.sign_out_everywhere(s, user)
    session.clear()
    return redirect(url_for("auth.login"))


def format_local(when) -> str:
    from ..engine import calendar as cal

    return when.astimezone(cal.LOCAL_TZ).strftime("%H:%M %d/%m/%Y")
