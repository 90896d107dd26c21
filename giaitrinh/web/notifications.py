"""Officials' notifications (the bell and its list) and the email outbox pages for administrators.

``/dev/outbox`` shows every message with its body, so a demo works without a mail server.
Bodies hold personal data (and, until sent, a citizen's tracking link): the page exists only
outside production (the blueprint is not registered when GIAITRINH_ENV=production, so it is
a 404 there) and only an administrator may open it. ``/quan-tri/thu-gui`` lists deliveries
(recipient, subject, state, error) in every environment, for administrators, with a retry
button for failed messages; it never shows bodies.
"""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.errors import ServiceError
from ..engine.services import notifications as service
from .auth import current_actor, login_required, require_actor
from .feedback import run_and_flash
from .policy import policy

bp = Blueprint("notifications", __name__)
dev_bp = Blueprint("dev_outbox", __name__, url_prefix="/dev")


def unread_notifications() -> int:
    """The bell's number, computed once per page and only for a signed-in official."""
    if "unread_notifications" not in g:
        actor = current_actor()
        count = 0
        if actor is not None and actor.is_official:
            try:
                count = service.unread_count(actor)
            except ServiceError:
                count = 0
        g.unread_notifications = count
    return g.unread_notifications


def _page() -> int:
    raw = request.args.get("page") or "1"
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 100000 else 1


@bp.get("/thong-bao/")
@policy("official")
@login_required
def inbox():
    unread_only = request.args.get("chua-doc") == "1"
    found = service.list_for(require_actor(), unread_only=unread_only, page=_page(), per_page=50)
    return render_template("notifications/list.html", found=found, unread_only=unread_only)


@bp.post("/thong-bao/da-doc")
@policy("official")
@login_required
def mark_read():
    raw = request.form.getlist("id")[:500]
    ids = [int(x) for x in raw if x.isdigit() and len(x) < 12] if raw else None
    run_and_flash(lambda: service.mark_read(require_actor(), ids), _("Đã đánh dấu là đã đọc."))
    return redirect(url_for("notifications.inbox"), 303)


def _outbox(template: str, with_bodies: bool):
    status = request.args.get("status") or None
    status = status if status in service.OUTBOX_STATUSES else None
    found = service.list_outbox(require_actor(), status=status, with_bodies=with_bodies, page=_page(), per_page=50)
    return render_template(template, found=found, status=status)


@bp.get("/quan-tri/thu-gui")
@policy("role:admin")
@login_required
def outbox():
    return _outbox("notifications/outbox.html", with_bodies=False)


@bp.post("/quan-tri/thu-gui/<int:message_id>/gui-lai")
@policy("role:admin")
@login_required
def retry(message_id: int):
    run_and_flash(lambda: service.retry_message(require_actor(), message_id),
                  _("Đã đưa thư vào hàng đợi; hệ thống sẽ gửi lại ngay."))
    return redirect(url_for("notifications.outbox", status="failed"), 303)


@dev_bp.get("/outbox")
@policy("role:admin")
@login_required
def dev_outbox():
    return _outbox("notifications/dev_outbox.html", with_bodies=True)


def init_app(app, settings) -> None:
    app.register_blueprint(bp)
    if not settings.production:
        app.register_blueprint(dev_bp)
    app.jinja_env.globals.update(unread_notifications=unread_notifications)
