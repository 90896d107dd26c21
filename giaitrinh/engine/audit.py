"""The append-only, hash-chained audit trail.

Each event carries the hash of the one before it, so removing or editing any row
breaks the chain at that point and ``giaitrinh audit verify`` names it. Appends
lock the single ``audit_head`` row, which serialises writers on every backend.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event as sa_event, select
from sqlalchemy.orm import Session

from . import clock, entityreads, rowwrites
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64


# What json.dumps(..., sort_keys=True, ensure_ascii=False, default=str) makes, byte for byte: the
# encoder it would build for each call (three a step's event), built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def payload_digest(event) -> str:
    """The digest of what an event says (note, before, after): scheme 2 chains this."""
    body = {"note": event.note, "before": event.before, "after": event.after}
    return hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


def _canonical(event) -> bytes:
    body = {
        "request_id": event.request_id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "step": event.step,
        "public": event.public,
        "prev_hash": event.prev_hash,
    }
    if event.hash_scheme == 1:  # written before payload digests existed
        body.update(note=event.note, before=event.before, after=event.after)
    else:
        body["payload_sha256"] = event.payload_sha256
    return _CANONICAL.encode(body).encode()


def compute_hash(event) -> str:
    """The chained hash of an event: an ``AuditEvent`` row, or the namespace ``record`` hashes."""
    return hashlib.sha256(_canonical(event)).hexdigest()


_HEAD = "giaitrinh_audit_head"
# Read through the driver (entityreads): no autoflush (what the use case changed so far does not
# bear on the head), and none of the ORM's handling of a statement, which cost more than the read.
_HEAD_QUERY = entityreads.columns_of(AuditHead).where(AuditHead.id == 1).with_for_update()


def _locked_head(session: Session) -> AuditHead:
    """The chain's head row, locked once per transaction and reused for its further events.

    The lock is held until the transaction ends, so no other writer can move the head
    in between; a new transaction (or one rolled back) reads and locks it again.
    """
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD)
    if cached is not None and transaction is not None and cached[0] is transaction and cached[1] in session:
        return cached[1]
    found = entityreads.rows(session, _HEAD_QUERY, {}, (AuditHead,))
    head = found[0][0] if found else None
    if head is None:
        head = AuditHead(id=1, last_hash=GENESIS, count=0)
        session.add(head)
    session.info[_HEAD] = (transaction, head)
    return head


_DEFERRED = "giaitrinh_audit_deferred"


def defer_inserts(session: Session) -> None:
    """Hold this transaction's new events and insert them together, in order, as its next flush
    begins (or at the commit): a scheduler's batch writes two events a firing, and one statement
    for all of them costs less than a statement each. Readers of the trail in the same transaction
    call ``write_deferred`` first."""
    session.info[_DEFERRED] = []


def write_deferred(session: Session) -> None:
    """Insert the events ``defer_inserts`` is holding, in the order they were recorded."""
    pending = session.info.get(_DEFERRED)
    if pending:
        session.info[_DEFERRED] = []
        rowwrites.insert_rows(session, AuditEvent.__table__, pending)


@sa_event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context, _instances) -> None:
    write_deferred(session)


@sa_event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    write_deferred(session)


def hold_head(session: Session, head: AuditHead | None) -> None:
    """The head row as the caller read it under the database's write lock (SQLite's BEGIN
    IMMEDIATE), with the case it works on: this transaction's events start from it."""
    transaction = session.get_transaction()
    if head is not None and transaction is not None and session.get_nested_transaction() is None:
        session.info[_HEAD] = (transaction, head)


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    request_id: int | None = None,
    step: str | None = None,
    note: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    public: bool = True,
    at: datetime | None = None,
) -> SimpleNamespace:
    """Append one event in the caller's transaction.

    The row is inserted at once with a plain INSERT, not added to the session: it is never
    changed afterwards, so the unit of work has nothing to track, and the stored before/after
    are exactly what was hashed even if the caller's dicts change later in the transaction.
    The returned event is that row's content, attribute for attribute, as a plain namespace:
    building an ORM instance only to hash it was a fifth of an event's cost.
    """
    head = _locked_head(session)
    when = (at or clock.now()).astimezone(timezone.utc)
    values = dict(
        request_id=request_id,
        at=when,
        actor=actor,
        action=action,
        step=step,
        note=note,
        before=before,
        after=after,
        public=public,
        prev_hash=head.last_hash,
        hash_scheme=2,
    )
    event = SimpleNamespace(**values)
    event.payload_sha256 = values["payload_sha256"] = payload_digest(event)
    event.hash = values["hash"] = compute_hash(event)
    deferred = session.info.get(_DEFERRED)
    if deferred is not None:
        deferred.append(values)
        event.id = None  # given when the held events are inserted
    else:
        # Through the driver, in the session's transaction: a plain insert needs none of the ORM's
        # statement handling (a third of an event's cost through session.execute), nor Core's.
        event.id = rowwrites.insert_rows(session, AuditEvent.__table__, [values])
    head.last_hash = event.hash
    head.count += 1
    return event


def _purge_records(session: Session) -> set[int]:
    """Ids of the events that retention records say it erased (those records are chained too)."""
    ids: set[int] = set()
    for after in session.execute(select(AuditEvent.after).where(AuditEvent.action == "retention_purged")).scalars():
        ids.update((after or {}).get("events", []))
    return ids


def erase_payload(event: AuditEvent, when: datetime) -> None:
    """Retention: drop what an event says, keep that it happened (its digest stays chained)."""
    if event.hash_scheme == 1:
        raise ValueError("events written before payload digests cannot be erased without breaking the chain")
    event.note = None
    event.before = None
    event.after = None
    event.purged_at = when


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Recompute the chain from the first event; report the first one that does not fit."""
    prev = GENESIS
    checked = 0
    last_id = 0
    purged_by_record = _purge_records(session)
    while True:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for event in rows:
            if event.prev_hash != prev:
                return VerifyResult(False, checked, event.id, "the event before it was removed or altered")
            if compute_hash(event) != event.hash:
                return VerifyResult(False, checked, event.id, "its content was altered")
            if event.hash_scheme != 1:
                if event.purged_at is None and payload_digest(event) != event.payload_sha256:
                    return VerifyResult(False, checked, event.id, "its content was altered")
                if event.purged_at is not None and event.id not in purged_by_record:
                    return VerifyResult(False, checked, event.id,
                                        "its content was erased without a retention record naming it")
            prev = event.hash
            checked += 1
            last_id = event.id
        session.expunge_all()
    head = session.get(AuditHead, 1)
    if head is not None and (head.last_hash != prev or head.count != checked):
        return VerifyResult(False, checked, None, "events were removed from the end of the trail")
    return VerifyResult(True, checked)
