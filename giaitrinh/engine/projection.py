"""Write the public projection of a workflow: the request, its tasks and its jobs.

Called inside the same transaction as the state it projects, so a list page never
needs to deserialize a workflow and never disagrees with it.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, lazyload

from . import calendar as cal
from . import attention, clock, entityreads, jobs, runtime
from .models import Escalation, Job, Request, Task

CLOSED_STATUSES = {"refused", "redirected", "published", "terminated"}
OPEN_TASK = "open"

# Built once: building a statement costs more than SQLite running it. The request is
# already in the session, so the tasks' joined load of it is left out.
# Jobs are locked as they are read (the request row is already held): a scheduler's claim
# on one of them either committed before, and is seen, or waits until this transaction ends.
_WAITING_TIMER_JOBS = select(Job).where(
    Job.request_id == bindparam("request_id"), Job.kind == "timer", Job.status.in_(("waiting", "paused"))
).with_for_update()
_OPEN_TASKS = select(Task).where(
    Task.request_id == bindparam("request_id"), Task.status == OPEN_TASK).options(lazyload(Task.request))


def _parse(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


_HELD = "giaitrinh_case_rows_held"  # (request id, model) -> the held rows, by id()
_KEPT = "giaitrinh_case_rows_kept"
CASE_ROWS = (Task, Job, Escalation)


def hold_case_rows(session: Session, request_ids, models=CASE_ROWS, rows=()) -> None:
    """Promise that the session holds these requests' rows of ``models`` that ``sync`` and
    ``raise_escalation`` look at (open tasks, waiting or paused jobs, escalations): read at once
    with the request, under its lock (a scheduler's batch, a completion on SQLite), and given as
    ``rows`` (objects of other kinds or cases among them are left out). They then read none of
    them again, and find them in this index rather than among everything the session holds:
    a batch of 50 firings scanned its whole identity map twice a firing."""
    held = session.info.setdefault(_HELD, {})
    for request_id in request_ids:
        for model in models:
            held.setdefault((request_id, model), {})
    for obj in rows:
        bucket = held.get((getattr(obj, "request_id", None), type(obj)))
        if bucket is not None:
            bucket[id(obj)] = obj
    if rows:  # kept alive for the session (the workflow state too): its identity map holds them weakly
        session.info.setdefault(_KEPT, []).extend(rows)


@event.listens_for(Session, "pending_to_persistent")
def _held_once_flushed(session: Session, obj) -> None:
    # A row added to a held case and flushed since (by an autoflush in a batch) is no longer among
    # the session's new objects: the index keeps it in view, as the identity map would.
    held = session.info.get(_HELD)
    if held:
        bucket = held.get((getattr(obj, "request_id", None), type(obj)))
        if bucket is not None:
            bucket[id(obj)] = obj


def holds_case_rows(session: Session, request_id: int, model) -> bool:
    return (request_id, model) in session.info.get(_HELD, ())


def held_rows(session: Session, request_id: int, model) -> list:
    """The case's stored rows of ``model`` the session holds (``hold_case_rows``), as they are
    in memory; one rolled back to a savepoint since is gone from the session and from here."""
    bucket = session.info.get(_HELD, {}).get((request_id, model), {})
    return [obj for obj in bucket.values() if obj.request_id == request_id and obj in session]


def _as_flushed(session: Session, statement, model, request_id: int, keep, changed) -> list:
    """The rows ``statement`` selects for a request as they would be after a flush, without one.

    The query reads the rows as stored; objects the session holds count as they are in
    memory: a row changed here is judged by ``keep`` on its new values, a row added here
    is included, a deleted one is not. Saves the unit of work a flush before each query costs.
    When the session holds all of the request's rows (``hold_case_rows``), there is no query.
    ``changed``: the session's new and changed objects (``(*session.new, *session.dirty)``),
    listed once by the caller for both kinds it asks about: a batch's grow with each firing.
    """
    if holds_case_rows(session, request_id, model):
        found = {id(obj): obj for obj in held_rows(session, request_id, model)}
    else:
        with session.no_autoflush:
            found = {id(obj): obj for obj in session.execute(statement, {"request_id": request_id}).scalars()}
    for obj in changed:
        if isinstance(obj, model) and obj.request_id == request_id:
            found[id(obj)] = obj
    deleted = session.deleted
    return [obj for obj in found.values() if keep(obj) and obj not in deleted]


def sync(session: Session, request: Request, running: runtime.Running, new: bool = False) -> list[Task]:
    """Bring the request's rows in line with its workflow; returns newly opened tasks.

    ``new``: the request was created in this transaction, so it has no rows to read yet.
    """
    with session.no_autoflush:
        return _sync(session, request, running, new)


def _none(*_args) -> list:
    return []


def _sync(session: Session, request: Request, running: runtime.Running, new: bool) -> list[Task]:
    existing = _none if new else _as_flushed
    now = clock.now()
    manifest = running.manifest
    wf = running.workflow

    # Jobs: one row per waiting timer.
    open_now = runtime.open_tasks(wf)  # the three questions below, from one walk of the task tree
    timers = runtime.waiting_timers(wf, open_now)
    due_by_task: dict[str, datetime] = {}
    # The session's new and changed objects, for the jobs and then the tasks: what happens in
    # between adds and changes jobs only.
    changed = () if new else (*session.new, *session.dirty)
    existing_jobs = {
        j.spiff_task_id: j
        for j in existing(session, _WAITING_TIMER_JOBS, Job, request.id,
                             lambda j: j.kind == "timer" and j.status in ("waiting", "paused"), changed)
    }
    for timer in timers:
        if timer.attached_to:
            due_by_task[timer.attached_to] = min(timer.due_at, due_by_task.get(timer.attached_to, timer.due_at))
        job = existing_jobs.pop(timer.spiff_task_id, None)
        if job is None:
            entityreads.add(session, entityreads.new(
                Job, request_id=request.id, kind="timer", spiff_task_id=timer.spiff_task_id,
                step=timer.attached_to or timer.bpmn_id, due_at=timer.due_at,
                status="paused" if request.suspended_at else "waiting", created_at=now))
        elif job.due_at != timer.due_at:
            job.due_at = timer.due_at
            jobs.revoke_lease(job)
    for job in existing_jobs.values():  # timers that no longer wait (fired or cancelled)
        job.status = "done"
        jobs.revoke_lease(job)

    # Tasks: one row per ready human task.
    ready = {str(t.id): t for t in runtime.ready_human_tasks(wf, open_now)}
    rows = {
        t.id: t
        for t in existing(session, _OPEN_TASKS, Task, request.id, lambda t: t.status == OPEN_TASK, changed)
    }
    opened: list[Task] = []
    open_rows: dict[str, Task] = {}  # the row of every ready task, read or just added
    for task_id, spiff_task in ready.items():
        meta = manifest["tasks"].get(spiff_task.task_spec.bpmn_id, {})
        due = due_by_task.get(spiff_task.task_spec.bpmn_id)
        row = rows.pop(task_id, None)
        if row is None:
            assignee = None
            if meta.get("assignee_expr"):
                try:
                    assignee = runtime.evaluate(running, spiff_task, meta["assignee_expr"]) or None
                except Exception:  # an assignee that cannot be computed leaves the task to the role
                    assignee = None
            row = entityreads.new(
                Task, id=task_id, request_id=request.id, step=meta.get("step", spiff_task.task_spec.bpmn_id),
                title=meta.get("title", spiff_task.task_spec.bpmn_name or spiff_task.task_spec.bpmn_id),
                candidate_role=meta.get("role") or "head", unit_code=request.unit_code,
                assignee=str(assignee) if assignee else None, status=OPEN_TASK, created_at=now, due_at=due)
            entityreads.add(session, row)
            opened.append(row)
        elif due is not None:
            # A fired (non-interrupting) deadline leaves the task due when it was: it is late, not undated.
            row.due_at = due
        open_rows[task_id] = row
    for row in rows.values():  # no longer ready: cancelled by the flow (e.g. an interrupting event)
        row.status = "cancelled"
        row.completed_at = now
    attention.know_open_tasks(session, request, open_rows.values())

    # The request itself.
    status, data, main_ended = running.position = runtime.current_position(running, open_now)
    if status:
        _put(request, "status", status)
    deadlines = {k: v for k, v in (data.get("deadlines") or {}).items() if isinstance(v, str)}
    _put(request, "deadlines", deadlines)
    main_steps = [t for t in ready.values() if manifest["tasks"].get(t.task_spec.bpmn_id, {}).get("status")]
    _put(request, "current_step", main_steps[0].task_spec.bpmn_id if main_steps else (
        "needs_info" if status == "needs_info" else None))
    assignee = None
    for t in main_steps:
        row = open_rows.get(str(t.id))
        if row is not None and row.assignee:
            assignee = row.assignee
    _put(request, "assignee", assignee)
    _put(request, "extended", bool(data.get("extensions_used")))
    if main_ended or status in CLOSED_STATUSES:
        deadline_at = None
        _put(request, "overdue", False)
    else:
        deadline_at = _parse(deadlines.get("acknowledge_by" if status in ("received", "needs_info") else "explain_by"))
        _put(request, "overdue", bool(deadline_at and deadline_at < now))
    _put(request, "deadline_at", deadline_at)
    request.last_activity_at = now
    return opened


_UNSET = object()


def _put(obj, key: str, value) -> None:
    """``setattr`` of a column, skipped when the object already holds this very value (equal, of
    the same type): the flush would write nothing for it, and an instrumented set of each of a
    request's eight facts at every step (a change event, a history entry) cost more than the test."""
    held = obj.__dict__.get(key, _UNSET)
    if held is not _UNSET and type(held) is type(value) and held == value:
        return
    setattr(obj, key, value)


def working_days_left(calendar: cal.WorkingCalendar, due_at: datetime | None) -> int | None:
    if due_at is None:
        return None
    return cal.working_days_left(clock.now(), due_at, calendar)
