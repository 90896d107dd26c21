"""Retention: a closed case's personal data is erased after a period; what the public and the
statistics need stays.

Erased: the requester's name, address, phone and email; the request text; the rating
comment; the form data of its tasks; the unredacted explanation (the published, redacted
one takes its place); the private workflow state; what its audit events said; the text and
files of its documents and its attachments (their numbers and digests stay). Kept: the
case's code, unit, dates, statuses, deadlines, rating score, the published answer, and
that every event happened (its hash stays in the chain, and the purge itself is an event
that names each event it erased, so ``giaitrinh audit verify`` still passes and can tell
a purge from tampering).
"""
from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import select

from .. import audit, clock, db, notifications
from ..models import AuditEvent, Request, Task, WorkflowState
from . import attachments, documents

ERASED = "[đã xóa]"
DEFAULT_DAYS = int(os.environ.get("GIAITRINH_RETENTION_DAYS", str(5 * 365)))


def due(days: int = DEFAULT_DAYS) -> list[str]:
    """Codes of closed cases whose personal data is past its retention period."""
    cutoff = clock.now() - timedelta(days=days)
    with db.read_only() as session:
        return list(session.execute(
            select(Request.code).where(Request.closed.is_(True), Request.closed_at < cutoff,
                                       Request.purged_at.is_(None)).order_by(Request.id)).scalars())


def purge(code: str, actor: str = "system") -> dict:
    """Erase one closed case's personal data in one transaction with its audit record."""
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code).with_for_update()).scalar_one()
        if not request.closed or request.purged_at is not None:
            return {"code": code, "events": 0, "skipped": True}
        now = clock.now()
        request.requester_name = ERASED
        request.requester_address = ERASED
        request.requester_phone = ERASED
        request.requester_email = None
        request.content = ERASED
        request.rating_comment = None
        if request.published_text:
            request.explanation = {"legal_basis": request.published_text.get("legal_basis"),
                                   "content": request.published_text.get("content")}
        elif request.explanation:
            request.explanation = {"content": ERASED}
        outcome = dict(request.outcome or {})
        for key in ("note", "reason", "info"):
            if key in outcome:
                outcome[key] = ERASED
        request.outcome = outcome
        request.purged_at = now
        for task in session.execute(select(Task).where(Task.request_id == request.id)).scalars():
            task.data = None
        notifications.purge_for_request(session, request.id)
        state = session.get(WorkflowState, request.id)
        if state is not None:
            state.state = '{"purged": true}'
        erased: list[int] = []
        legacy = 0
        for event in session.execute(select(AuditEvent).where(
                AuditEvent.request_id == request.id, AuditEvent.purged_at.is_(None))).scalars():
            if event.note is None and event.before is None and event.after is None:
                continue
            if event.hash_scheme == 1:
                legacy += 1  # chained with its payload: erasing it would break the chain
                continue
            audit.erase_payload(event, now)
            erased.append(event.id)
        documents.purge_case(session, request.id)
        digests = attachments.purge_case(session, request.id)
        session.flush()
        audit.record(session, "retention_purged", actor=actor, request_id=request.id, public=False,
                     after={"events": erased, "kept_legacy_events": legacy})
    attachments.delete_unreferenced(digests)
    # No live-cache entry survives this: the cache is checked against the state text, now changed.
    return {"code": code, "events": len(erased), "kept_legacy_events": legacy, "skipped": False}
