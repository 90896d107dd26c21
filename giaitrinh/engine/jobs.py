"""Job rows and the one discipline for changing them.

A scheduler claims a due job by writing a lease (owner, expiry) and bumping the
job's version; the version it read back is its fencing token. Whoever else
changes a job (a completion that moves a deadline, a suspension that pauses the
clock) locks the row first and revokes any lease on it, so an in-flight firing
that was planned on the old row sees a new version and gives up instead of
committing a stale result.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Job


def for_request(session: Session, request_id: int, statuses: Iterable[str], kind: str | None = None) -> list[Job]:
    """The request's jobs in these statuses, locked and read fresh (the caller holds the request row)."""
    query = select(Job).where(Job.request_id == request_id, Job.status.in_(tuple(statuses))).order_by(Job.id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.execute(query).scalars())


def revoke_lease(job: Job) -> None:
    job.lease_owner = None
    job.lease_expires_at = None
