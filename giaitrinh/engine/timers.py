"""Timers as rows: every waiting BPMN timer is a job with ``due_at``.

Any number of processes may run the scheduler against one PostgreSQL database.
Each sleeps until the earliest ``due_at`` (at most ``MAX_SLEEP`` seconds, so a job
written by another process is seen within that time), claims a batch of due jobs
with ``SELECT ... FOR UPDATE SKIP LOCKED`` and a lease (owner, expiry), and fires
each in its own transaction, fenced by the version it claimed: a worker whose
lease expired, or whose job was changed meanwhile, commits nothing. A crashed
worker's leases expire and the next sweep anywhere takes its jobs. A job that
keeps failing retries with backoff and then becomes an incident a supervisor can
see and retry; losing a race (an optimistic-lock conflict, a deadlock) is not a
failure. On SQLite one process per database file runs the scheduler (a file lock),
and it fires its claimed jobs in batches, several per transaction: a firing stays atomic
with its audit events, and if one fails the batch is fired again with each firing in a
savepoint of its own, so that one is rolled back and recorded alone (``_fire_batch``).
Earliest due first, everywhere.

Tests and the dev clock call :func:`run_due` directly: time is moved, never waited.
Due times follow the engine clock; leases follow the wall clock, so moving the
demo clock does not expire every lease at once.
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import lazyload

from . import audit, clock, db, jobs, leasing, notifications, projection, runtime
from .errors import NotFound
from .models import Escalation, Job, Request, Task, WorkflowState
from .services import _common

log = logging.getLogger(__name__)

# Seconds: a job written by another process (or a clock moved by hand) is seen within this.
MAX_SLEEP = float(os.environ.get("GIAITRINH_SCHEDULER_POLL_SECONDS", "30"))
LEASE = timedelta(seconds=float(os.environ.get("GIAITRINH_JOB_LEASE_SECONDS", "300")))
RACE_HOLD = timedelta(seconds=2)  # after losing a race, before the job is claimed again
MAX_ATTEMPTS = 5
CLAIM = 200  # jobs leased per claim
# On SQLite, firings per transaction (each in its own savepoint), and the longest a batch
# holds the database's one write lock. On PostgreSQL every firing is its own transaction: a
# batch would hold the audit chain's head while waiting for the next request's row lock, the
# reverse of the order every other writer takes them in, and would serialise the workers.
FIRE_BATCH = max(1, int(os.environ.get("GIAITRINH_TIMER_BATCH", "50")))
BATCH_SECONDS = 0.25

_lock = threading.Lock()
_scheduler = None
_sqlite_lock = None  # the open lock file while this process is SQLite's one scheduler
_HOST = socket.gethostname()


def owner() -> str:
    """Who holds a lease: host and process, computed when asked (gunicorn forks after import)."""
    return f"{_HOST}:{os.getpid()}"


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))


# -- firing ---------------------------------------------------------------------------


def _claim(now: datetime, limit: int) -> list[tuple[int, int | None, int]]:
    """Lease due jobs so no other scheduler fires them, earliest due first;
    returns (job id, request id, fencing version)."""
    with db.transaction() as session:
        claimed = leasing.claim_due(session, Job.__table__, "waiting", now, limit, owner(), LEASE)
        return [(job.id, job.request_id, job.version) for job in claimed]


# Built once: building a statement costs SQLAlchemy more than SQLite takes to run it.
_JOB_REQUEST = select(Job.request_id).where(Job.id == bindparam("id"))
_REQUEST_LOCKED = select(Request).where(Request.id == bindparam("id")).with_for_update()
_JOB_LOCKED = (select(Job).where(Job.id == bindparam("id")).with_for_update()
               .execution_options(populate_existing=True))


def _prefetch(session, claimed: list[tuple[int, int | None, int]]) -> list:
    """SQLite's batch: its jobs, requests and workflow states, and every row of those cases a
    firing reads (their waiting jobs, open tasks, escalations, who is told of an escalation), a
    statement each for the whole batch. The session holds them for the batch, which holds the
    database's write lock: nobody else changes them, and the firings look none of them up again.
    Its connection gets a larger page cache for the batch (``db.widen_page_cache``).
    """
    db.widen_page_cache(session)
    job_ids = [job_id for job_id, _request_id, _fence in claimed]
    request_ids = sorted({request_id for _job_id, request_id, _fence in claimed if request_id is not None})
    held: list = []
    for model, condition in (
            (Request, Request.id.in_(request_ids)), (Job, Job.id.in_(job_ids)),
            (WorkflowState, WorkflowState.request_id.in_(request_ids)),
            (Job, Job.request_id.in_(request_ids) & Job.status.in_(("waiting", "paused"))),
            (Task, Task.request_id.in_(request_ids) & (Task.status == projection.OPEN_TASK)),
            (Escalation, Escalation.request_id.in_(request_ids))):
        query = select(model).where(condition)
        if model is Task:
            query = query.options(lazyload(Task.request))
        held.extend(session.execute(query).scalars())
    projection.hold_case_rows(session, request_ids, rows=held)
    notifications.prefetch_escalation_recipients(
        session, {obj.unit_code for obj in held if isinstance(obj, Request)})
    return held


def _fire(session, job_id: int, fence: int | None, now: datetime, request_id: int | None = None,
          prefetched: bool = False) -> bool:
    """Fire one job in the caller's transaction; True if it changed a case.

    ``request_id`` is the job's (it never changes) when the caller read it already;
    ``prefetched``: the session holds the job and its request as they are (``_prefetch``).
    """
    if request_id is None:
        request_id = session.execute(_JOB_REQUEST, {"id": job_id}).scalar_one_or_none()
    request = None
    if prefetched:
        request = session.get(Request, request_id) if request_id is not None else None
        job = session.get(Job, job_id)
    else:
        # Lock order everywhere: the request row first, then its jobs.
        if request_id is not None:
            request = session.execute(_REQUEST_LOCKED, {"id": request_id}).scalar_one_or_none()
        job = session.execute(_JOB_LOCKED, {"id": job_id}).scalar_one_or_none()
    if job is None or job.status != "waiting" or job.due_at > now or not _holds_lease(job, fence):
        return False
    jobs.revoke_lease(job)
    if request is None or request.closed:
        job.status = "done"
        return False
    if request.suspended_at is not None:
        job.status = "paused"
        return False
    job.attempts += 1
    if job.kind == "escalation_repeat":
        return _repeat_escalation(session, job, request, now)
    with session.no_autoflush:  # the job's changes go out with the firing's, in one flush
        running, state = _common.load_running(session, request)
    before = request.status
    fired = runtime.fire_timer(running, job.spiff_task_id)
    job.status = "done"
    if not fired:
        return False
    job.fired_at = now
    # One flush for the state, its projection, the escalation and the audit, where the caller's
    # transaction or savepoint ends; a concurrent writer of the state (StaleDataError) is then
    # a lost race, as anywhere else in a firing.
    _common.save_running(session, request, running, state, flush_now=False)
    status, data, main_ended = running.position
    _common.apply_status_effects(session, request, before, data, main_ended)
    audit.record(session, "timer_fired", actor="system", request_id=request.id, step=job.step, public=False,
                 after={"job": job.id, "due_at": _common.iso(job.due_at), "status": request.status})
    return True


def fire_job(job_id: int, fence: int | None = None, request_id: int | None = None) -> bool:
    """Fire one job in its own transaction; True if it changed a case.

    ``fence`` is the version this worker's claim wrote; without it (a direct call,
    e.g. from a test) the job is fired only if nobody holds a live lease on it.
    """
    now = clock.now()
    try:
        with db.transaction() as session:
            return _fire(session, job_id, fence, now, request_id)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, never lost
        _after_failure(job_id, fence, exc)
        return False


def _after_failure(job_id: int, fence: int | None, exc: Exception, session=None) -> None:
    """What a failed firing leaves: a lost race gives the job back, a real failure is counted.

    With ``session`` (a batch whose transaction goes on) in that transaction, else in a new one.
    """
    if db.lost_race(exc):
        log.info("job %s: lost a race (%s); it will be claimed again", job_id, type(exc).__name__)
        _release(job_id, fence, session)
    elif db.unreachable(exc):
        log.warning("job %s: database unreachable (%s); the lease will expire", job_id, exc)
    else:
        _record_failure(job_id, fence, exc, session)


def _fire_batch(claimed: list[tuple[int, int | None, int]]) -> tuple[int, int]:
    """Fire claimed jobs in one transaction; returns (how many changed a case, how many of
    ``claimed`` were tried).

    On SQLite the batch is first fired as one plain transaction (``_fire_together``): nearly
    always nothing fails, and savepoints cost a unit-of-work pass each (11% of a burst's
    instructions). Should anything in it fail, nothing of it was written, and the same jobs are
    fired again each in a savepoint of its own (``_fire_in_savepoints``), where the failure is
    recorded on its job alone and the others stand.
    """
    if db.is_sqlite():
        try:
            return _fire_together(claimed)
        except Exception as exc:  # noqa: BLE001 - nothing of this batch was written
            if db.unreachable(exc):
                return _left_to_expire(exc, claimed)
            log.info("a batch of firings failed (%s: %s); firing it again, each in a savepoint",
                     type(exc).__name__, exc)
    return _fire_in_savepoints(claimed)


def _left_to_expire(exc: Exception, claimed: list) -> tuple[int, int]:
    log.warning("database unreachable (%s); the leases of %s jobs will expire", exc, len(claimed))
    return 0, len(claimed)  # the next sweep, here or anywhere, takes them again


def _batch_full(tried: int, started: float) -> bool:
    return tried >= FIRE_BATCH or time.monotonic() - started > BATCH_SECONDS


def _fire_together(claimed: list[tuple[int, int | None, int]]) -> tuple[int, int]:
    """SQLite's batch in one transaction, no savepoints: the first failure rolls all of it back."""
    started = time.monotonic()
    fired = tried = 0
    with _collector_paused():
        with db.transaction() as session:
            held = _prefetch(session, claimed[:FIRE_BATCH])  # noqa: F841 - kept alive
            audit.defer_inserts(session)  # the batch's events in one statement, at its one flush
            for job_id, request_id, fence in claimed:
                tried += 1
                fired += _fire(session, job_id, fence, clock.now(), request_id, True)
                if _batch_full(tried, started):
                    break
    return fired, tried


@contextmanager
def _collector_paused():
    """The cyclic garbage collector held off for a batch, then one pass over the young objects.

    Every firing loads a workflow (its tasks point back at it: a cycle), and what survives the
    young generation's passes (the batch's workflows, its session's objects) was walked again by
    the middle generation's, at 40 to 250 ms each: 5% of a burst. One pass after the batch
    (about 5 ms) finds the same garbage; the batch holds its memory for at most BATCH_SECONDS.
    """
    if not gc.isenabled():  # somebody else holds it off: leave it to them
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)


def _fire_in_savepoints(claimed: list[tuple[int, int | None, int]]) -> tuple[int, int]:
    """Fire claimed jobs in one transaction, each in a SAVEPOINT of its own.

    Each firing is atomic with its audit events: one that fails is rolled back to its
    savepoint and recorded on its job (a retry, then an incident) in the same transaction,
    and the others stand. The batch stops after ``FIRE_BATCH`` firings or ``BATCH_SECONDS``
    (the rest goes to the next transaction), so it never holds SQLite's write lock for long.
    If the transaction itself fails (the commit, the connection) nothing of it was written:
    its jobs are tried again one transaction each, and a job whose firing breaks the commit
    is then recorded alone.
    """
    started = time.monotonic()
    fired = tried = 0
    try:
        with db.transaction() as session:
            prefetched = db.is_sqlite()
            held = _prefetch(session, claimed[:FIRE_BATCH]) if prefetched else []  # noqa: F841 - kept alive
            for job_id, request_id, fence in claimed:
                tried += 1
                try:
                    with session.begin_nested():
                        fired += _fire(session, job_id, fence, clock.now(), request_id, prefetched)
                except Exception as exc:  # noqa: BLE001 - rolled back to its savepoint; the batch goes on
                    if db.unreachable(exc):
                        raise
                    with session.begin_nested():
                        _after_failure(job_id, fence, exc, session)
                if _batch_full(tried, started):
                    break
        return fired, tried
    except Exception as exc:  # noqa: BLE001 - nothing of this batch was written
        if db.unreachable(exc):
            return _left_to_expire(exc, claimed)
        tried = max(tried, 1)  # it may have failed before its first firing: go on all the same
        log.warning("a batch of %s firings failed as a whole (%s); firing them one by one", tried, exc)
        return sum(fire_job(job_id, fence, request_id) for job_id, request_id, fence in claimed[:tried]), tried


def _holds_lease(job: Job, fence: int | None) -> bool:
    if fence is None:
        return job.lease_owner is None or job.lease_expires_at is None or job.lease_expires_at < clock.wall_now()
    return job.version == fence and job.lease_owner == owner() and job.lease_expires_at > clock.wall_now()


def _repeat_escalation(session, job: Job, request: Request, now: datetime) -> bool:
    """Remind again while the same deadline stays missed."""
    job.status = "done"
    job.fired_at = now
    last = session.execute(
        select(Escalation).where(Escalation.request_id == request.id).order_by(Escalation.id.desc()).limit(1)
    ).scalar_one_or_none()
    if last is None or not request.overdue or request.deadline_at is None or last.due_at != request.deadline_at:
        return False
    running, _state = _common.load_running(session, request)
    _common.raise_escalation(session, request, running, None, step=last.step, due_at=last.due_at)
    return True


def _locked_if_still_ours(session, job_id: int, fence: int | None) -> Job | None:
    job = session.execute(_JOB_LOCKED, {"id": job_id}).scalar_one_or_none()
    if job is None or job.status != "waiting" or (fence is not None and job.version != fence):
        return None  # somebody else has moved it on: nothing of ours to undo
    return job


@contextmanager
def _own_transaction(session):
    if session is not None:
        yield session
    else:
        with db.transaction() as new:
            yield new


def _release(job_id: int, fence: int | None, session=None) -> None:
    """Give the job back after a lost race; a short hold keeps this sweep from spinning on it."""
    try:
        with _own_transaction(session) as tx:
            job = _locked_if_still_ours(tx, job_id, fence)
            if job is not None:
                job.lease_owner = None
                job.lease_expires_at = clock.wall_now() + RACE_HOLD
    except Exception:  # noqa: BLE001 - the lease expires by itself
        if session is not None:
            raise
        log.debug("could not release job %s", job_id, exc_info=True)


def _record_failure(job_id: int, fence: int | None, exc: Exception, session=None) -> None:
    log.warning("job %s failed: %s", job_id, exc)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    try:
        with _own_transaction(session) as tx:
            job = _locked_if_still_ours(tx, job_id, fence)
            if job is None:
                return
            job.attempts += 1
            job.last_error = detail
            jobs.revoke_lease(job)
            if job.attempts >= MAX_ATTEMPTS:
                job.status = "incident"
                audit.record(tx, "incident", actor="system", request_id=job.request_id, step=job.step,
                             public=False, note=detail[:500])
            else:
                job.due_at = clock.now() + _backoff(job.attempts)
    except Exception:  # noqa: BLE001 - the lease expires and the job is tried again
        if session is not None:
            raise
        log.exception("could not record the failure of job %s", job_id)


def run_due(now: datetime | None = None, limit: int | None = None) -> int:
    """Fire every job due by ``now`` (default: the engine clock), earliest due first;
    returns how many changed a case."""
    now = now or clock.now()
    fired = 0
    done = 0
    batch = FIRE_BATCH if db.is_sqlite() else 1
    while limit is None or done < limit:
        claimed = _claim(now, CLAIM if limit is None else min(CLAIM, limit - done))
        if not claimed:
            break
        while claimed:
            if batch == 1:
                job_id, request_id, fence = claimed[0]
                fired += fire_job(job_id, fence, request_id)
                tried = 1
            else:
                changed, tried = _fire_batch(claimed)
                fired += changed
            claimed = claimed[tried:]
            done += tried
    return fired


def next_due() -> datetime | None:
    """The earliest job this process could claim; jobs another worker holds a live lease on are
    left out (else every idle scheduler would spin on them), and re-examined at the next poll."""
    wall = clock.wall_now()
    with db.read_only() as session:
        return session.execute(
            select(func.min(Job.due_at)).where(
                Job.status == "waiting", (Job.lease_expires_at.is_(None)) | (Job.lease_expires_at < wall))
        ).scalar_one_or_none()


def retry_incident(job_id: int, actor: str) -> None:
    with db.transaction() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != "incident":
            raise NotFound("không có sự cố này (unknown incident)")
        job.status = "waiting"
        job.attempts = 0
        job.due_at = clock.now()
        jobs.revoke_lease(job)
        audit.record(session, "incident_retried", actor=actor, request_id=job.request_id, step=job.step, public=False)
    wake()


# -- the scheduler ----------------------------------------------------------------------


def _sweep() -> None:
    try:
        if _may_run_here():
            run_due()
            from . import mail

            mail.deliver_due()  # the email outbox rides on the same sweep (engine/mail.py)
    except Exception:  # noqa: BLE001 - the scheduler must outlive a bad sweep (and a database restart)
        log.exception("timer sweep failed")
    finally:
        _schedule_next()


# How often the SQLite planner's statistics are looked at (engine/db.py refresh_statistics): as the
# database grows from a few demo cases to a city's million, plans chosen on old figures go wrong.
STATISTICS_HOURS = 6


def _refresh_statistics() -> None:
    try:
        if db.is_sqlite() and _may_run_here():
            log.info("planner statistics: %s", db.refresh_statistics())
    except Exception:  # noqa: BLE001 - a busy or restarting database: next time
        log.exception("refreshing the planner statistics failed")


def _may_run_here() -> bool:
    """On PostgreSQL every scheduler may sweep; on SQLite only the holder of the file lock."""
    global _sqlite_lock
    if not db.is_sqlite():
        return True
    if _sqlite_lock is not None:
        return True
    path = sqlite_lock_path()
    if path is None:
        return True  # an in-memory database lives in one process anyway
    import fcntl

    handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False  # another process on this file runs the scheduler; try again next wake-up
    handle.seek(0)
    handle.truncate()
    handle.write(f"{owner()}\n")
    handle.flush()
    _sqlite_lock = handle
    log.info("this process runs the scheduler of %s", db.get_engine().url.database)
    return True


def sqlite_lock_path() -> Path | None:
    database = db.get_engine().url.database
    if not database or database == ":memory:":
        return None
    return Path(database + ".scheduler.lock")


def is_scheduler_here() -> bool:
    return _scheduler is not None and _scheduler.running and (not db.is_sqlite() or _sqlite_lock is not None)


def _schedule_next() -> None:
    scheduler = _scheduler
    if scheduler is None or not scheduler.running:
        return
    now = clock.now()
    try:
        due = None
        if _may_run_here():
            from . import mail

            due = min((d for d in (next_due(), mail.next_due()) if d is not None), default=None)
    except Exception:  # noqa: BLE001 - the database may be restarting: look again soon
        due = None
    delay = MAX_SLEEP if due is None else max(0.0, min(MAX_SLEEP, (due - now).total_seconds()))
    run_at = datetime.now().astimezone() + timedelta(seconds=delay)
    scheduler.add_job(_sweep, "date", run_date=run_at, id="sweep", replace_existing=True,
                      misfire_grace_time=None, coalesce=True, max_instances=1)


def start_scheduler():
    """Start the background scheduler of this process (``giaitrinh serve``, each gunicorn worker)."""
    global _scheduler
    from apscheduler.schedulers.background import BackgroundScheduler

    with _lock:
        if _scheduler is not None and _scheduler.running:
            return _scheduler
        _scheduler = BackgroundScheduler(daemon=True)
        _scheduler.start()
        _scheduler.add_job(_sweep, "date", run_date=datetime.now().astimezone(), id="sweep",
                           replace_existing=True, misfire_grace_time=None)
        _scheduler.add_job(_refresh_statistics, "interval", hours=STATISTICS_HOURS, id="statistics",
                           next_run_time=datetime.now().astimezone() + timedelta(minutes=1),
                           replace_existing=True, coalesce=True, max_instances=1)
        return _scheduler


def stop_scheduler() -> None:
    global _scheduler, _sqlite_lock
    with _lock:
        if _scheduler is not None and _scheduler.running:
            _scheduler.shutdown(wait=False)
        _scheduler = None
        if _sqlite_lock is not None:
            _sqlite_lock.close()  # releases the flock: another process may take over
            _sqlite_lock = None


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
