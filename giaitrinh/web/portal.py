"""Citizens and the public: submit a request, follow it with its secret link, read published answers.

Citizens have no account: the request's code plus its token (shown once, in the tracking link)
open that one request. Every action here calls one engine service.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError, ValidationFailed
from ..engine.services import attachments as attachments_service
from ..engine.services import documents as documents_service
from ..engine.services import requests as requests_service
from .limits import limiter, submit_limit, track_limit
from .policy import policy
from .uploads import accepts_files, files_of

bp = Blueprint("portal", __name__)

PER_PAGE = 20


def _token() -> str:
    return (request.values.get("token") or "").strip()[:64]


def _code(code: str) -> str:
    if len(code) > 32:
        abort(404)
    return code


def _tracking_url(code: str, token: str, **extra) -> str:
    return url_for("portal.track", code=code, token=token, _external=False, **extra)


@bp.get("/")
@policy("public")
def home():
    latest = requests_service.search_published(per_page=5, with_total=False)
    return render_template("portal/home.html", latest=latest["items"])


def _submission_payload(form) -> dict:
    requester = {k: (form.get(f"requester.{k}") or "").strip() for k in ("name", "address", "phone", "email", "kind")}
    requester = {k: v for k, v in requester.items() if v}
    payload = {"requester": requester, "subject": (form.get("subject") or "").strip(),
               "content": (form.get("content") or "").replace("\r\n", "\n").strip()}
    if form.get("unit"):
        payload["unit"] = form["unit"].strip()
    return {k: v for k, v in payload.items() if v}


@bp.route("/gui-yeu-cau", methods=["GET", "POST"])
@policy("public")
@limiter.shared_limit(submit_limit, scope="submission", methods=['POST'])
@accepts_files(attachments_service.MAX_FILES)
def submit():
    units = requests_service.receiving_units()
    values: dict = {}
    errors: dict = {}
    message = None
    status = 422
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            evidence = attachments_service.check_all(files_of("attachments"))
            result = requests_service.submit(_submission_payload(request.form), actor=None, attachments=evidence)
        except (ValidationFailed, attachments_service.TooLarge) as exc:
            errors, message = exc.fields or {}, _("Yêu cầu chưa hợp lệ: hãy sửa các trường được đánh dấu.")
            status = exc.status
            if any(k.startswith("attachments") for k in errors):
                errors["attachments"] = " ".join(v for k, v in errors.items() if k.startswith("attachments"))
        else:
            flash(_("Đã gửi yêu cầu %(code)s. Hãy lưu lại đường dẫn theo dõi bên dưới: đây là lần duy nhất "
                    "hệ thống hiển thị mã bí mật.", code=result["code"]), "success")
            return redirect(_tracking_url(result["code"], result["token"], moi=1), 303)
    return render_template("portal/submit.html", units=units, values=values, errors=errors, message=message,
                           accept=attachments_service.ACCEPT, max_files=attachments_service.MAX_FILES), \
        (status if errors else 200)


@bp.get("/tra-cuu")
@policy("public")
@limiter.shared_limit(track_limit, scope="tracking")
def lookup():
    code = (request.args.get("code") or "").strip().upper()[:32]
    token = _token()
    if code and token:
        return redirect(_tracking_url(code, token))
    return render_template("portal/lookup.html", code=code)


@bp.get("/yeu-cau/<code>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def track(code: str):
    code = _code(code)
    token = _token()
    try:
        case = requests_service.view(code, token or None, None)
    except ServiceError as exc:
        return render_template("portal/lookup.html", code=code, error=exc.message), exc.status
    files = {"documents": documents_service.list_documents(code, token or None, None)["items"],
             "attachments": attachments_service.list_attachments(code, token or None, None)["items"]}
    return render_template("portal/track.html", case=case, token=token, files=files,
                           tracking_url=url_for("portal.track", code=code, token=token, _external=True),
                           new=request.args.get("moi") == "1")


def _act(code: str, action, success: str):
    """Run one citizen action; on a refusal show the tracking page again with the reason."""
    code = _code(code)
    token = _token()
    try:
        action(code, token)
    except ValidationFailed as exc:
        flash(_("Chưa thực hiện được: %(reason)s", reason="; ".join(exc.fields.values()) or exc.message), "error")
    except ServiceError as exc:
        if exc.status == 404:
            return render_template("portal/lookup.html", code=code, error=exc.message), 404
        flash(_("Chưa thực hiện được: %(reason)s", reason=exc.message), "error")
    else:
        flash(success, "success")
    return redirect(_tracking_url(code, token), 303)


@bp.post("/yeu-cau/<code>/rut")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def withdraw(code: str):
    reason = (request.form.get("reason") or "").strip() or None
    return _act(code, lambda c, t: requests_service.withdraw(c, t, reason, None), _("Đã rút yêu cầu."))


@bp.post("/yeu-cau/<code>/bo-sung")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def provide_info(code: str):
    content = (request.form.get("content") or "").replace("\r\n", "\n").strip()
    return _act(code, lambda c, t: requests_service.provide_info(c, t, content, None),
                _("Đã gửi thông tin bổ sung."))


@bp.post("/yeu-cau/<code>/danh-gia")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def rate(code: str):
    raw = request.form.get("score") or ""
    score = int(raw) if raw.isdigit() else raw
    comment = (request.form.get("comment") or "").strip() or None
    return _act(code, lambda c, t: requests_service.rate(c, t, score, comment), _("Cảm ơn bạn đã đánh giá."))


@bp.get("/cong-khai")
@policy("public")
def published():
    q = (request.args.get("q") or "").strip()[:200]
    unit = (request.args.get("unit") or "").strip()[:32] or None
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    result = requests_service.search_published(q or None, unit, page=page, per_page=PER_PAGE)
    pages = max(1, -(-result["total"] // PER_PAGE))
    return render_template("portal/published.html", result=result, q=q, unit=unit, page=page, pages=pages,
                           units=requests_service.receiving_units())


@bp.get("/cong-khai/<code>")
@policy("public")
def published_one(code: str):
    item = requests_service.search_published_one(_code(code))
    if item is None:
        abort(404, description=_("Không có kết quả công khai %(code)s.", code=code))
    return render_template("portal/published_one.html", item=item)

