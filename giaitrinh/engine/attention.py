"""What the supervisors' "stuck" list reads, kept on the request row in step with the case's rows.

An open, not suspended case is stuck (``services.supervision.STUCK_REASONS``) when it has an
open task past its due time, a job that failed its retries (an incident), nothing that will
move it (no open task, no waiting or paused timer, and not waiting for the requester), or no
activity for N working days. Deciding the first three from the task and job rows takes a
look-up per open case: about 750 ms for a city's 100,000 open cases, for each count and each
list. So the request row carries typed facts, written in the same transaction as the rows
they summarise:

- ``task_due_at``: the earliest due time of the case's open tasks (None when no open task
  is dated): "an open task is past due" is ``task_due_at < now``;
- ``work_pending``: the case has an open task, an unfinished job (waiting, paused, or
  failed: an incident), or waits for the requester's information; "nothing will move it"
  is its negation (false, the default, for every closed case);
- ``escalated``: the case has an escalation no one has resolved yet. The dashboard counts the
  escalated open cases per unit in the same index pass as the open and overdue ones; joining
  the open escalations to their cases had cost 30 ms of a city's page.

and "stuck now" is a test on columns of one partial index of the live cases (``ix_requests_attention``),
with ``now`` and the inactivity cutoff computed in Python (``supervision``). Incidents are
read from the jobs themselves (``incident_cases``): they are few, and the scheduler marks a
job failed holding only the job's row lock, so keeping a flag on the request there would take
the request's lock after the job's, against the lock order every other writer follows. For the
same reason ``work_pending`` counts a failed job as unfinished: a job moving between waiting,
paused and failed never changes it. Only a case with an incident is judged "nothing waits"
from its rows (``supervision``), the way it always was.

How the facts stay true: the projection (``projection.sync``) reads every open task of the case it
brings in line and says so (``know_open_tasks``). When such a case still has an open task as a flush
begins, its facts follow from the objects in memory (the earliest due time of those open tasks, work
pending since a task is open, escalated if an unresolved escalation is being added) and go out in
the same UPDATE of the request row as its other changes: the common case, a step completed or a
timer fired, costs no statement of its own. Otherwise, after every flush that inserts or deletes a task, a job or an
escalation, resolves an escalation, changes a task's status or due time, moves a job into or out
of the unfinished statuses, or changes a request's status, one UPDATE recomputes them for the
cases concerned from their rows as they now stand (``refresh``), inside the same transaction,
whichever use case wrote the rows. Those writers all hold the request's row lock already. Code
that writes task, job or escalation rows with Core statements, outside the ORM's unit of work,
calls ``refresh(session, request_ids)`` itself.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, event, exists, func, inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from . import plainsql
from .models import Escalation, Job, Request, Task

OPEN_TASK = "open"
# A job in one of these still has something to do (a failed one waits for a supervisor's retry).
UNFINISHED_JOBS = ("waiting", "paused", "incident")
WAITS_FOR_REQUESTER = "needs_info"
FACTS = ("task_due_at", "work_pending", "escalated")


def _refresh_statement():
    r = Request.__table__.c
    tasks, jobs, escalations = Task.__table__.c, Job.__table__.c, Escalation.__table__.c
    open_task = exists().where(tasks.request_id == r.id, tasks.status == OPEN_TASK)
    unfinished_job = exists().where(jobs.request_id == r.id, jobs.status.in_(UNFINISHED_JOBS))
    unresolved = exists().where(escalations.request_id == r.id, escalations.resolved_at.is_(None))
    return (update(Request.__table__).where(r.id.in_(bindparam("ids", expanding=True)))
            .values(task_due_at=select(func.min(tasks.due_at))
                    .where(tasks.request_id == r.id, tasks.status == OPEN_TASK).scalar_subquery(),
                    work_pending=or_(open_task, unfinished_job, r.status == WAITS_FOR_REQUESTER),
                    escalated=unresolved))


# Built once: building a statement costs more than SQLite running it.
_REFRESH = _refresh_statement()


def refresh(session: Session, request_ids: Iterable[int]) -> None:
    """Recompute the facts of these cases from their task and job rows as the transaction sees them.

    Objects of these requests the session holds forget the old values (read again if asked).
    """
    _refresh(session, request_ids, in_flush=False)


def _refresh(session: Session, request_ids: Iterable[int], in_flush: bool) -> None:
    ids = sorted({i for i in request_ids if i is not None})
    if not ids:
        return
    plainsql.execute(session, _REFRESH, {"ids": ids})
    for request_id in ids:
        held = session.identity_map.get(session.identity_key(Request, (request_id,)))
        if held is None:
            continue
        if in_flush:  # expired once the flush has settled the object's state
            session.info.setdefault(_EXPIRE, []).append(held)
        else:
            session.expire(held, FACTS)


def incident_cases():
    """The ids of the cases with a job that failed its retries (few: read from the jobs' index)."""
    return select(Job.request_id).where(Job.status == "incident", Job.request_id.is_not(None))


# -- keeping them true: the flush hook ---------------------------------------------------------

_EXPIRE = "giaitrinh_attention_expire"
_KNOWN = "giaitrinh_attention_known"  # request id -> (transaction, request, its open task rows)
_TO_REFRESH = "giaitrinh_attention_to_refresh"


def _transaction(session: Session):
    """The innermost (sub)transaction: a savepoint's, if one is open."""
    return session.get_nested_transaction() or session.get_transaction()


def know_open_tasks(session: Session, request: Request, rows: Iterable[Task]) -> None:
    """``rows`` are all of the case's open tasks as the session now sees them (``projection.sync``).

    Valid for the (sub)transaction in force: a savepoint rolled back or released since, and the
    next flush asks the database again.
    """
    if request.id is not None:
        session.info.setdefault(_KNOWN, {})[request.id] = (_transaction(session), request, list(rows))


def _in_memory(session: Session, request_ids: set[int]) -> dict[int, tuple]:
    """The facts of those known cases that follow from the objects in memory: request id ->
    (request, task_due_at, escalation added). A case left out is refreshed from its rows."""
    known = session.info.get(_KNOWN)
    if not known:
        return {}
    transaction = _transaction(session)
    candidates = {}
    for request_id in request_ids:
        entry = known.get(request_id)
        if entry is not None and entry[0] is transaction and transaction.is_active:
            candidates[request_id] = entry
    if not candidates:
        return {}
    tasks: dict[int, dict[int, Task]] = {}
    added: set[int] = set()
    unsure: set[int] = set()
    new = session.new  # a set built anew at each access: once, not once per escalation
    for obj in (*new, *session.dirty):
        if isinstance(obj, Task):
            tasks.setdefault(obj.request_id, {})[id(obj)] = obj
        elif isinstance(obj, Escalation) and obj.request_id in candidates:
            if obj in new and obj.resolved_at is None:
                added.add(obj.request_id)
            elif obj not in new:
                unsure.add(obj.request_id)  # resolved or moved: whether another one is open needs the rows
    for obj in session.deleted:
        if isinstance(obj, (Task, Escalation)):
            unsure.add(obj.request_id)
    facts = {}
    for request_id, (_transaction_, request, rows) in candidates.items():
        if request_id in unsure:
            continue
        held = {id(row): row for row in rows}
        held.update(tasks.get(request_id, {}))
        open_rows = [row for row in held.values() if row.status == OPEN_TASK and row.request_id == request_id]
        if not open_rows:
            continue  # nothing open: whether a job or the requester keeps it moving needs the rows
        dues = [row.due_at for row in open_rows if row.due_at is not None]
        facts[request_id] = (request, min(dues) if dues else None, request_id in added)
    return facts


# The most cases one flush judges in memory; the others are refreshed by one statement. Memory is
# the cheaper way at any size a use case reaches: a scheduler's batch of 50 firings is one pass over
# the session's objects (about 25 µs a case), where the statement read each case's task, job and
# escalation rows again (about 200 µs a case on a city's database, a twentieth of a burst).
# Tests set 0 to exercise the statement.
IN_MEMORY_CASES = 10_000


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context, _instances) -> None:
    ids = concerned(session)
    known = _in_memory(session, ids) if len(ids) <= IN_MEMORY_CASES else {}
    for request_id, (request, task_due_at, escalation_added) in known.items():
        request.task_due_at = task_due_at
        request.work_pending = True
        if escalation_added:
            request.escalated = True
        ids.discard(request_id)
    # A new row's case (or a new request's own id) may only be known once it is inserted; a new
    # request flushed alone has no rows yet, and its facts are plain.
    rows_pending = any(isinstance(obj, (Task, Job, Escalation)) for obj in session.new)
    unnumbered = []
    for obj in session.new:
        if isinstance(obj, Request) and obj.id is None:
            if rows_pending:
                unnumbered.append(obj)
            else:
                obj.task_due_at, obj.escalated = None, False
                obj.work_pending = obj.status == WAITS_FOR_REQUESTER
        elif isinstance(obj, (Task, Job, Escalation)) and obj.request_id is None:
            unnumbered.append(obj)
    session.info[_TO_REFRESH] = (ids, unnumbered)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_known(session: Session) -> None:
    session.info.pop(_KNOWN, None)


def _changed(obj, *names: str) -> bool:
    """Whether any of these attributes was set since the object was loaded or flushed.

    Read from the values the session keeps to undo the changes (``committed_state``): a scheduler's
    batch asks this of hundreds of objects, and their attribute histories cost ten times more. An
    attribute set back to its old value counts as changed, which only ever means one case more
    refreshed."""
    committed = instance_state(obj).committed_state
    return any(name in committed for name in names)


def _job_moved(job: Job) -> bool:
    """The job entered or left the unfinished statuses (or moved to another case)."""
    committed = instance_state(job).committed_state
    if "request_id" in committed:
        return True
    if "status" not in committed:
        return False
    before = committed["status"]
    if not isinstance(before, str):  # not loaded before it was set: assume it moved
        return True
    return (before in UNFINISHED_JOBS) != (job.status in UNFINISHED_JOBS)


def _moved_from(obj) -> int | None:
    """The case a row belonged to before it was moved to another in this flush, if it was.

    Read from the undo values, as ``_changed``: asking ``inspect(obj).attrs`` for the attribute's
    history built the state of every attribute of the row, for each job a burst fires."""
    before = instance_state(obj).committed_state.get("request_id")
    return before if isinstance(before, int) else None


def concerned(session: Session) -> set[int]:
    """The cases whose facts this flush may change (called before the flush's changes are final)."""
    ids: set[int] = set()
    for obj in session.new:
        if isinstance(obj, (Task, Job, Escalation)):
            ids.add(obj.request_id)
        elif isinstance(obj, Request):
            ids.add(obj.id)
    for obj in session.deleted:
        if isinstance(obj, (Task, Job, Escalation)):
            ids.add(obj.request_id)
    for obj in session.dirty:
        if isinstance(obj, Escalation):
            if _changed(obj, "resolved_at", "request_id"):
                ids.update((obj.request_id, _moved_from(obj)))
        elif isinstance(obj, Task):
            if _changed(obj, "status", "due_at", "request_id"):
                ids.update((obj.request_id, _moved_from(obj)))
        elif isinstance(obj, Job):
            if _job_moved(obj):
                ids.update((obj.request_id, _moved_from(obj)))
        elif isinstance(obj, Request) and _changed(obj, "status"):
            ids.add(obj.id)
    ids.discard(None)
    return ids


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context) -> None:
    _refresh_concerned(session, in_flush=True)


def written_before_flush(session: Session) -> None:
    """Every change of a flush was written by its ``before_flush`` listeners (engine/rowwrites.py):
    the unit of work has nothing left, so no ``after_flush`` follows; the facts are settled here."""
    _refresh_concerned(session, in_flush=False)


def _refresh_concerned(session: Session, in_flush: bool) -> None:
    # The rows are written; the cases the flush concerns were found before it began, while
    # every change was still pending (those whose facts went out with the request row are not here).
    ids, unnumbered = session.info.pop(_TO_REFRESH, (set(), ()))
    ids.update(obj.id if isinstance(obj, Request) else obj.request_id for obj in unnumbered)
    ids.discard(None)
    if ids:
        _refresh(session, ids, in_flush=in_flush)


@event.listens_for(Session, "after_flush_postexec")
def _forget_old_values(session: Session, _context) -> None:
    for held in session.info.pop(_EXPIRE, ()):
        if inspect(held).persistent:
            session.expire(held, FACTS)
