"""Timers as rows: every waiting BPMN timer is a job with ``due_at``.

The scheduler (APScheduler, one background thread) sleeps until the earliest
``due_at`` (at most ``MAX_SLEEP`` seconds, so a job written by another process is
seen within that time), claims due jobs with a lease and fires each in its own
transaction. A job that keeps failing becomes an incident a supervisor can see.
Tests and the dev clock call :func:`run_due` directly: time is moved, never waited.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from datetime import datetime, timedelta

from sqlalchemy import func, select

from . import audit, calendar as cal, clock, db, runtime
from .models import Escalation, Job, Request
from .services import _common

log = logging.getLogger(__name__)

MAX_SLEEP = 30.0  # seconds: a job due now is fired within this even if nobody wakes us
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
BATCH = 200

_lock = threading.Lock()
_scheduler = None
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))


# -- firing ---------------------------------------------------------------------------


def _claim(now: datetime, limit: int) -> list[int]:
    """Take a lease on due jobs so another scheduler leaves them alone."""
    with db.transaction() as session:
        query = (
            select(Job).where(Job.status == "waiting", Job.due_at <= now,
                              (Job.lease_expires_at.is_(None)) | (Job.lease_expires_at < now))
            .order_by(Job.due_at, Job.id).limit(limit)
        )
        if not db.is_sqlite():
            query = query.with_for_update(skip_locked=True)
        jobs = session.execute(query).scalars().all()
        for job in jobs:
            job.lease_owner = OWNER
            job.lease_expires_at = now + LEASE
        return [job.id for job in jobs]


def fire_job(job_id: int) -> bool:
    """Fire one job in its own transaction; True if it changed a case."""
    now = clock.now()
    try:
        with db.transaction() as session:
            job = session.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
            if job is None or job.status != "waiting" or job.due_at > now:
                return False
            if job.lease_owner not in (None, OWNER):
                return False  # fenced: another worker holds it
            request = session.execute(
                select(Request).where(Request.id == job.request_id).with_for_update()
            ).scalar_one_or_none()
            if request is None or request.closed:
                job.status = "done"
                return False
            if request.suspended_at is not None:
                job.status = "paused"
                return False
            if job.kind == "escalation_repeat":
                return _repeat_escalation(session, job, request, now)
            running, state = _common.load_running(session, request)
            before = request.status
            fired = runtime.fire_timer(running, job.spiff_task_id)
            job.attempts += 1
            job.lease_owner = None
            job.lease_expires_at = None
            if not fired:
                job.status = "done"
                return False
            job.fired_at = now
            _common.save_running(session, request, running, state)
            job.status = "done"
            status, data, main_ended = runtime.current_position(running)
            _common.apply_status_effects(session, request, before, data, main_ended)
            audit.record(session, "timer_fired", actor="system", request_id=request.id, step=job.step, public=False,
                         after={"job": job.id, "due_at": _common.iso(job.due_at), "status": request.status})
            return True
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, never lost
        _record_failure(job_id, exc)
        return False


def _repeat_escalation(session, job: Job, request: Request, now: datetime) -> bool:
    """Remind again while the same deadline stays missed."""
    job.status = "done"
    job.fired_at = now
    job.lease_owner = None
    last = session.execute(
        select(Escalation).where(Escalation.request_id == request.id).order_by(Escalation.id.desc()).limit(1)
    ).scalar_one_or_none()
    if last is None or not request.overdue or request.deadline_at is None or last.due_at != request.deadline_at:
        return False
    running, _state = _common.load_running(session, request)
    _common.raise_escalation(session, request, running, None, step=last.step, due_at=last.due_at)
    return True


def _record_failure(job_id: int, exc: Exception) -> None:
    log.warning("job %s failed: %s", job_id, exc)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    with db.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        job.attempts += 1
        job.last_error = detail
        job.lease_owner = None
        job.lease_expires_at = None
        if job.attempts >= MAX_ATTEMPTS:
            job.status = "incident"
            audit.record(session, "incident", actor="system", request_id=job.request_id, step=job.step,
                         public=False, note=detail[:500])
        else:
            job.due_at = clock.now() + _backoff(job.attempts)


def run_due(now: datetime | None = None, limit: int | None = None) -> int:
    """Fire every job due by ``now`` (default: the engine clock); returns how many changed a case."""
    now = now or clock.now()
    fired = 0
    done = 0
    while limit is None or done < limit:
        ids = _claim(now, BATCH if limit is None else min(BATCH, limit - done))
        if not ids:
            break
        for job_id in ids:
            fired += fire_job(job_id)
            done += 1
    return fired


def next_due() -> datetime | None:
    with db.read_only() as session:
        return session.execute(select(func.min(Job.due_at)).where(Job.status == "waiting")).scalar_one_or_none()


def retry_incident(job_id: int, actor: str) -> None:
    with db.transaction() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != "incident":
            from .errors import NotFound
            raise NotFound("không có sự cố này (unknown incident)")
        job.status = "waiting"
        job.attempts = 0
        job.due_at = clock.now()
        audit.record(session, "incident_retried", actor=actor, request_id=job.request_id, step=job.step, public=False)
    wake()


# -- the scheduler ----------------------------------------------------------------------


def _sweep() -> None:
    try:
        run_due()
    except Exception:  # noqa: BLE001 - the scheduler must outlive a bad sweep
        log.exception("timer sweep failed")
    finally:
        _schedule_next()


def _schedule_next() -> None:
    scheduler = _scheduler
    if scheduler is None or not scheduler.running:
        return
    now = clock.now()
    try:
        due = next_due()
    except Exception:  # noqa: BLE001
        due = None
    delay = MAX_SLEEP if due is None else max(0.0, min(MAX_SLEEP, (due - now).total_seconds()))
    run_at = datetime.now().astimezone() + timedelta(seconds=delay)
    scheduler.add_job(_sweep, "date", run_date=run_at, id="sweep", replace_existing=True,
                      misfire_grace_time=None, coalesce=True, max_instances=1)


def start_scheduler():
    """Start the background scheduler of this process (``giaitrinh serve``)."""
    global _scheduler
    from apscheduler.schedulers.background import BackgroundScheduler

    with _lock:
        if _scheduler is not None and _scheduler.running:
            return _scheduler
        _scheduler = BackgroundScheduler(daemon=True)
        _scheduler.start()
        _scheduler.add_job(_sweep, "date", run_date=datetime.now().astimezone(), id="sweep",
                           replace_existing=True, misfire_grace_time=None)
        return _scheduler


def stop_scheduler() -> None:
    global _scheduler
    with _lock:
        if _scheduler is not None and _scheduler.running:
            _scheduler.shutdown(wait=False)
        _scheduler = None


def wake() -> None:
    """A nearer job may have been written: sweep now instead of at the planned time."""
    scheduler = _scheduler
    if scheduler is None or not scheduler.running:
        return
    try:
        scheduler.add_job(_sweep, "date", run_date=datetime.now().astimezone(), id="sweep",
                          replace_existing=True, misfire_grace_time=None)
    except Exception:  # noqa: BLE001 - waking early is an optimisation
        log.debug("wake failed", exc_info=True)


def pause_request_jobs(session, request_id: int) -> None:
    for job in session.execute(select(Job).where(Job.request_id == request_id, Job.status == "waiting")).scalars():
        job.status = "paused"


