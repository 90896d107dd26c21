"""Officials' notifications (the bell, the list, mark as read) and the email outbox for administrators."""
from __future__ import annotations

from sqlalchemy import func, select, update

from .. import audit, clock, db, mail
from ..accounts import ALL_UNITS, Actor
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import Notification, OutboxMessage, Request
from . import _common
from ._common import iso

OUTBOX_STATUSES = ("queued", "sent", "failed")


def _mine(actor: Actor):
    """The actor's own notices, about units the actor still works in (a moved official sees no
    notices about the unit left behind)."""
    conditions = [Notification.username == actor.username]
    units = actor.units()
    if ALL_UNITS not in units:
        conditions.append(Notification.unit_code.in_(sorted(units)) if units else Notification.id.is_(None))
    return conditions


def _require_official(actor: Actor | None) -> Actor:
    if actor is None or not actor.is_official:
        raise Forbidden("chỉ cán bộ mới có thông báo (officials only)")
    return actor


def unread_count(actor: Actor) -> int:
    """For the bell in the header: one indexed count."""
    _require_official(actor)
    with db.read_only() as session:
        return session.execute(
            select(func.count()).select_from(Notification).where(*_mine(actor), Notification.read_at.is_(None))
        ).scalar_one()


def list_for(actor: Actor, unread_only: bool = False, page: int = 1, per_page: int = 50) -> dict:
    """The actor's notices, newest first, with the number still unread."""
    _require_official(actor)
    with db.read_only() as session:
        query = select(Notification).where(*_mine(actor))
        if unread_only:
            query = query.where(Notification.read_at.is_(None))
        total = _common.count(session, query)
        unread = session.execute(
            select(func.count()).select_from(Notification).where(*_mine(actor), Notification.read_at.is_(None))
        ).scalar_one()
        rows = session.execute(
            query.order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page)
        ).scalars().all()
        items = [{"id": n.id, "kind": n.kind, "title": n.title, "body": n.body, "request_code": n.request_code,
                  "unit": n.unit_code, "created_at": iso(n.created_at), "read_at": iso(n.read_at)} for n in rows]
        return {"items": items, "total": total, "unread": unread, "page": page, "per_page": per_page}


def mark_read(actor: Actor, ids: list[int] | None = None) -> int:
    """Mark some (or, with ``ids=None``, all) of the actor's notices read; returns how many changed."""
    _require_official(actor)
    if ids is not None:
        if not isinstance(ids, list) or len(ids) > 500 or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2 ** 31 for i in ids):
            raise ValidationFailed("danh sách thông báo không hợp lệ",
                                   {"ids": "Tối đa 500 số nguyên dương (at most 500 positive integers)."})
    now = clock.now()
    with db.transaction() as session:
        statement = update(Notification).where(*_mine(actor), Notification.read_at.is_(None))
        if ids is not None:
            statement = statement.where(Notification.id.in_(ids))
        changed = session.execute(statement.values(read_at=now).execution_options(synchronize_session=False)).rowcount
        if changed:
            audit.record(session, "notifications_read", actor=actor.username, public=False,
                         after={"count": changed, "ids": ids[:50] if ids else None})
        return changed


# -- notify from another use case -----------------------------------------------------------------


# -- the outbox, for administrators ---------------------------------------------------------------


def _require_admin(actor: Actor) -> None:
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị hệ thống (administrators only)")


def list_outbox(actor: Actor, status: str | None = None, with_bodies: bool = False,
                page: int = 1, per_page: int = 50) -> dict:
    """Messages newest first with their delivery state; bodies (personal data) only for /dev/outbox."""
    _require_admin(actor)
    if status is not None and status not in OUTBOX_STATUSES:
        raise ValidationFailed("trạng thái không hợp lệ", {"status": ", ".join(OUTBOX_STATUSES)})
    with db.read_only() as session:
        query = select(OutboxMessage)
        if status:
            query = query.where(OutboxMessage.status == status)
        total = _common.count(session, query)
        counts = dict(session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        rows = session.execute(
            query.order_by(OutboxMessage.id.desc()).offset((page - 1) * per_page).limit(per_page)
        ).scalars().all()
        codes = dict(session.execute(
            select(Request.id, Request.code).where(Request.id.in_({r.request_id for r in rows if r.request_id}))
        ).all()) if rows else {}
        items = []
        for row in rows:
            item = {"id": row.id, "kind": row.kind, "recipient": row.recipient, "subject": row.subject,
                    "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
                    "created_at": iso(row.created_at), "due_at": iso(row.due_at), "sent_at": iso(row.sent_at),
                    "request_code": codes.get(row.request_id), "attachments": len(row.attachments or [])}
            if with_bodies:
                item["body"] = mail.full_body(row)
            items.append(item)
        return {"items": items, "total": total, "counts": {s: counts.get(s, 0) for s in OUTBOX_STATUSES},
                "backend": mail.config().backend, "page": page, "per_page": per_page}


def retry_message(actor: Actor, message_id: int) -> None:
    """A failed message goes back in the queue, due now; audited."""
    _require_admin(actor)
    if not isinstance(message_id, int):
        raise NotFound("không có thư lỗi này (unknown failed message)")
    mail.retry(message_id, actor.username)
