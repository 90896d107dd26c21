"""Several firings in one transaction (SQLite's scheduler; once one fails, each in a savepoint
of its own): a firing is atomic with its audit events, one that fails or loses a race does not roll back or
lose the others, a crash in the middle writes none of the batch, and leases still fence every
firing, so racing workers fire each timer exactly once. On both databases."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from giaitrinh.engine import audit, clock, db, projection, timers
from giaitrinh.engine.errors import Conflict
from giaitrinh.engine.models import AuditEvent, Escalation, Job, Request, WorkflowState

from .helpers import submit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _batches_cut_by_size_only(monkeypatch):
    """A batch also ends after BATCH_SECONDS; on a slow machine that would move its boundaries."""
    monkeypatch.setattr(timers, "BATCH_SECONDS", 3600.0)


def _due_timers(fixed_clock, n: int) -> list[int]:
    """``n`` requests whose acknowledgement deadline has passed: one due timer job each, by id."""
    for _ in range(n):
        submit()
    fixed_clock.advance(days=11)
    with db.read_only() as session:
        ids = list(session.execute(
            select(Job.id).where(Job.kind == "timer", Job.status == "waiting").order_by(Job.id)).scalars())
    assert len(ids) == n
    return ids


def _fired_per_job() -> Counter:
    with db.read_only() as session:
        return Counter(after["job"] for after in session.execute(
            select(AuditEvent.after).where(AuditEvent.action == "timer_fired")).scalars())


def _case(job_id: int) -> dict:
    """What a firing changes on the job's case: each is all there or none of it."""
    with db.read_only() as session:
        job = session.get(Job, job_id)
        request = session.get(Request, job.request_id)
        return {
            "job": (job.status, job.attempts, job.lease_owner),
            "overdue": request.overdue,
            "escalations": session.execute(select(func.count()).select_from(Escalation)
                                           .where(Escalation.request_id == request.id)).scalar_one(),
            "events": session.execute(select(func.count()).select_from(AuditEvent)
                                      .where(AuditEvent.request_id == request.id)).scalar_one(),
            "state_version": session.get(WorkflowState, request.id).version,
        }


def _chain_ok() -> bool:
    with db.read_only() as session:
        return audit.verify(session).ok


def _fail_on(monkeypatch, doomed: set[int], exc: Exception):
    """Make the firing of the jobs in ``doomed`` raise ``exc`` inside the workflow step."""
    real = timers.runtime.fire_timer
    spiff_ids = {}
    with db.read_only() as session:
        for job_id in doomed:
            spiff_ids[session.get(Job, job_id).spiff_task_id] = job_id

    def fire(running, spiff_task_id):
        if spiff_task_id in spiff_ids:
            raise exc
        return real(running, spiff_task_id)

    monkeypatch.setattr(timers.runtime, "fire_timer", fire)


def _statements_while(action) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(db.get_engine(), "before_cursor_execute", record)
    try:
        result = action()
    finally:
        event.remove(db.get_engine(), "before_cursor_execute", record)
    return result, seen


def test_a_batch_where_nothing_fails_is_one_transaction_without_savepoints(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 4)
    claimed = timers._claim(clock.now(), 10)
    monkeypatch.setattr(db, "is_sqlite", lambda: True)  # the SQLite batch path, on either database
    result, statements = _statements_while(lambda: timers._fire_batch(claimed))
    assert result == (4, 4)
    assert "SAVEPOINT" not in statements and "RELEASE" not in statements
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()


def test_a_held_case_sees_its_rows_added_and_flushed_since_and_not_those_rolled_back(world, fixed_clock):
    """A batch holds its cases' rows (``projection.hold_case_rows``); a row added to one of them and
    written by an autoflush is no longer new, and still one of the case's; one rolled back with its
    savepoint is neither."""
    job_id = _due_timers(fixed_clock, 1)[0]

    def another_timer(request_id: int) -> Job:
        return Job(request_id=request_id, kind="timer", spiff_task_id=f"extra-{request_id}", step="extra",
                   due_at=clock.now(), status="waiting", created_at=clock.now())

    with db.transaction() as session:
        job = session.get(Job, job_id)
        projection.hold_case_rows(session, [job.request_id], rows=[job])
        flushed = another_timer(job.request_id)
        session.add(flushed)
        session.flush()
        assert flushed not in session.new
        savepoint = session.begin_nested()
        undone = another_timer(job.request_id)
        session.add(undone)
        session.flush()
        savepoint.rollback()
        assert {row.id for row in projection.held_rows(session, job.request_id, Job)} == {job.id, flushed.id}
        assert projection.held_rows(session, job.request_id + 1, Job) == []
        session.rollback()


def test_a_failing_firing_makes_the_batch_fire_again_in_savepoints_and_write_once(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 3)
    _fail_on(monkeypatch, {ids[2]}, RuntimeError("a script of the diagram failed"))
    claimed = timers._claim(clock.now(), 10)
    result, statements = _statements_while(lambda: timers._fire_batch(claimed))
    assert result == (2, 3)
    if db.is_sqlite():
        assert statements.count("SAVEPOINT") >= 3  # the second attempt
    # The first attempt's firings were rolled back with it: each fired once, by the second.
    assert _fired_per_job() == Counter({ids[0]: 1, ids[1]: 1}) and _chain_ok()
    with db.read_only() as session:
        assert session.get(Job, ids[2]).attempts == 1 and session.get(Job, ids[2]).status == "waiting"


def test_a_failing_firing_in_a_batch_leaves_the_others_fired(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 4)
    before = _case(ids[1])
    _fail_on(monkeypatch, {ids[1]}, RuntimeError("boom"))
    claimed = timers._claim(clock.now(), 10)
    assert timers._fire_batch(claimed) == (3, 4)  # one transaction; on SQLite what run_due does
    assert _fired_per_job() == Counter({ids[0]: 1, ids[2]: 1, ids[3]: 1})
    failed = _case(ids[1])
    # Nothing of the failed firing stayed (no escalation, no event, the workflow untouched) ...
    assert {k: failed[k] for k in ("overdue", "escalations", "events", "state_version")} == \
        {k: before[k] for k in ("overdue", "escalations", "events", "state_version")}
    # ... and the failure is on its job, as for a firing alone: a retry later, then an incident.
    assert failed["job"] == ("waiting", 1, None)
    with db.read_only() as session:
        job = session.get(Job, ids[1])
        assert "boom" in job.last_error and job.due_at > clock.now()
    for other in (ids[0], ids[2], ids[3]):
        case = _case(other)
        assert case["job"][0] == "done" and case["overdue"] and case["escalations"] == 1
    assert _chain_ok()
    # Fixed, the retry fires it once.
    monkeypatch.undo()
    fixed_clock.advance(hours=1)
    assert timers.run_due() == 1
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()


def test_a_lost_race_in_a_batch_gives_that_job_back_and_keeps_the_rest(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 3)
    _fail_on(monkeypatch, {ids[0]}, Conflict("modified concurrently"))
    assert timers._fire_batch(timers._claim(clock.now(), 10)) == (2, 3)
    assert _case(ids[0])["job"] == ("waiting", 0, None)  # not a failure: released, attempts untouched
    assert _fired_per_job() == Counter({ids[1]: 1, ids[2]: 1}) and _chain_ok()


def test_an_incident_in_a_batch_is_recorded_with_its_audit_event(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 2)
    _fail_on(monkeypatch, {ids[1]}, RuntimeError("always broken"))
    for _ in range(timers.MAX_ATTEMPTS):
        timers._fire_batch(timers._claim(clock.now(), 10))
        fixed_clock.advance(hours=2)
    assert _case(ids[1])["job"][0] == "incident"
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(AuditEvent)
                               .where(AuditEvent.action == "incident")).scalar_one() == 1
    assert _fired_per_job() == Counter({ids[0]: 1}) and _chain_ok()


def test_a_batch_stops_at_its_size_or_time_and_the_sweep_fires_the_rest(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 5)
    monkeypatch.setattr(timers, "FIRE_BATCH", 2)
    claimed = timers._claim(clock.now(), 10)
    assert timers._fire_batch(claimed) == (2, 2)
    assert timers.run_due() == 0  # the other three are still leased by this worker's claim
    monkeypatch.setattr(timers, "BATCH_SECONDS", 0.0)  # and after its time: here, after each firing
    assert timers._fire_batch(claimed[2:]) == (1, 1)
    monkeypatch.setattr(timers, "BATCH_SECONDS", 3600.0)
    assert timers._fire_batch(claimed[3:]) == (2, 2)
    assert _fired_per_job() == Counter({i: 1 for i in ids})


def test_a_job_taken_over_in_the_middle_of_a_batch_is_fenced_off(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 3)
    monkeypatch.setattr(timers, "owner", lambda: "worker-a")
    claimed_a = timers._claim(clock.now(), 10)
    # A's lease on the middle job runs out (A stalled on it); B finds it free, claims and fires it.
    with db.transaction() as session:
        session.get(Job, ids[1]).lease_expires_at = clock.wall_now() - timedelta(seconds=1)
    monkeypatch.setattr(timers, "owner", lambda: "worker-b")
    claimed_b = timers._claim(clock.now(), 10)
    assert [c[0] for c in claimed_b] == [ids[1]]
    assert timers._fire_batch(claimed_b) == (1, 1)
    # A comes back and fires its whole batch: the middle one commits nothing, the others do.
    monkeypatch.setattr(timers, "owner", lambda: "worker-a")
    assert timers._fire_batch(claimed_a) == (2, 3)
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(Escalation)).scalar_one() == 3


_CRASHER = """
import os, sys
from datetime import datetime
from giaitrinh.engine import clock, db, runtime, timers
db.init_db(sys.argv[1])
clock.set_clock(clock.FixedClock(datetime.fromisoformat(sys.argv[2])))
timers.owner = lambda: "crasher"
timers.BATCH_SECONDS = 3600.0  # batches cut by size only: the first firing of a cold process is slow
real, calls = runtime.fire_timer, []
def fire(running, spiff_task_id):
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os._exit(3)  # the process dies in the middle of the batch, nothing cleaned up
    return real(running, spiff_task_id)
runtime.fire_timer = fire
timers.run_due()
"""


def test_a_crash_in_the_middle_of_a_batch_leaves_every_case_before_or_after(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 4)
    before = {i: _case(i) for i in ids}
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", _CRASHER, world, clock.now().isoformat(), "3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    fired = _fired_per_job()
    if db.is_sqlite():
        assert fired == Counter()  # the first two were in the same transaction as the third
    else:
        assert fired == Counter({ids[0]: 1, ids[1]: 1})  # PostgreSQL: one transaction a firing
    for job_id in ids:
        case = _case(job_id)
        if job_id in fired:
            assert case["job"][0] == "done" and case["escalations"] == 1
        else:  # untouched, but still leased to the dead worker
            assert case["job"] == ("waiting", 0, "crasher")
            assert {k: case[k] for k in ("overdue", "escalations", "events", "state_version")} == \
                {k: before[job_id][k] for k in ("overdue", "escalations", "events", "state_version")}
    assert _chain_ok()
    assert timers.run_due() == 0  # the dead worker's leases are live for a while
    later = clock.wall_now() + timers.LEASE + timedelta(seconds=1)
    monkeypatch.setattr(clock, "wall_now", lambda: later)
    assert timers.run_due() == len(ids) - len(fired)
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()


def test_workers_racing_over_many_timers_fire_each_exactly_once(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 12)
    monkeypatch.setattr(timers, "FIRE_BATCH", 3)
    monkeypatch.setattr(timers, "CLAIM", 4)
    names = threading.local()
    monkeypatch.setattr(timers, "owner", lambda: getattr(names, "value", "main"))
    results, errors = {}, []
    start = threading.Barrier(3)

    def worker(name):
        names.value = name
        try:
            start.wait()
            results[name] = timers.run_due()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sum(results.values()) == len(ids)
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(Escalation)).scalar_one() == len(ids)


def test_escalations_of_one_deadline_raised_in_one_transaction_are_numbered_in_turn(world, fixed_clock):
    """The level counts escalations not yet flushed too (raise_escalation no longer flushes to count)."""
    from giaitrinh.engine.services import _common

    sub = submit()
    fixed_clock.advance(days=11)
    with db.transaction() as session:
        request = _common.request_for_update(session, sub["code"])
        running, _state = _common.load_running(session, request)
        due = request.deadline_at
        first = _common.raise_escalation(session, request, running, None, step="receive", due_at=due)
        second = _common.raise_escalation(session, request, running, None, step="receive", due_at=due)
        assert (first.level, second.level) == (1, 2)
    with db.transaction() as session:
        request = _common.request_for_update(session, sub["code"])
        running, _state = _common.load_running(session, request)
        assert _common.raise_escalation(session, request, running, None, step="receive", due_at=due).level == 3


def test_a_batch_whose_transaction_fails_is_fired_again_one_by_one(world, fixed_clock, monkeypatch):
    from contextlib import contextmanager

    ids = _due_timers(fixed_clock, 3)
    real, failed = db.transaction, []

    @contextmanager
    def commit_fails_once():
        with real() as session:
            yield session
            if not failed:  # the first transaction (the batch) dies before it commits
                failed.append(1)
                raise RuntimeError("disk I/O error")

    claimed = timers._claim(clock.now(), 10)
    monkeypatch.setattr(db, "transaction", commit_fails_once)
    assert timers._fire_batch(claimed) == (3, 3) and failed
    assert _fired_per_job() == Counter({i: 1 for i in ids}) and _chain_ok()


def test_a_batch_that_fails_before_its_first_firing_still_makes_progress(world, fixed_clock, monkeypatch):
    ids = _due_timers(fixed_clock, 2)
    calls = []

    def broken_prefetch(session, claimed):
        calls.append(1)
        raise RuntimeError("cannot read the batch")

    monkeypatch.setattr(timers, "_prefetch", broken_prefetch)
    monkeypatch.setattr(db, "is_sqlite", lambda: True)  # the SQLite batch path, on either database
    assert timers._fire_batch(timers._claim(clock.now(), 10)) == (1, 1)  # not (0, 0): the sweep moves on
    assert calls and _fired_per_job() == Counter({ids[0]: 1})


def test_a_batch_has_a_wide_page_cache_and_gives_it_back(world, fixed_clock, monkeypatch):
    """SQLite: the batch's connection holds more pages while it fires, and the default afterwards.
    PostgreSQL's cache is the server's: nothing is asked of it."""
    ids = _due_timers(fixed_clock, 3)
    if not db.is_sqlite():
        result, statements = _statements_while(timers.run_due)
        assert result == len(ids) and "PRAGMA" not in statements
        return
    seen = []
    fire = timers._fire

    def spying(session, *args, **kwargs):
        seen.append(session.connection().exec_driver_sql("PRAGMA cache_size").scalar_one())
        return fire(session, *args, **kwargs)

    monkeypatch.setattr(timers, "_fire", spying)
    with db.get_engine().connect() as conn:
        default = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    assert timers.run_due() == len(ids)
    assert seen == [-db.WIDE_PAGE_CACHE_KIB] * len(ids)
    pool = db.get_engine().pool
    held = [pool.connect() for _ in range(pool.checkedin())]  # every connection the pool keeps
    try:
        assert [c.driver_connection.execute("PRAGMA cache_size").fetchone()[0] for c in held] == [default] * len(held)
    finally:
        for c in held:
            c.close()


def test_a_batch_holds_the_cyclic_collector_off_and_gives_it_back(world, fixed_clock, monkeypatch):
    import gc

    _due_timers(fixed_clock, 3)
    monkeypatch.setattr(db, "is_sqlite", lambda: True)  # the SQLite batch path, on either database
    seen = []
    fire = timers._fire

    def spying(session, *args, **kwargs):
        seen.append(gc.isenabled())
        return fire(session, *args, **kwargs)

    monkeypatch.setattr(timers, "_fire", spying)
    assert gc.isenabled()
    assert timers.run_due() == 3
    assert seen == [False] * 3 and gc.isenabled()
    # Held off by somebody else already: still off after the batch.
    more = _due_timers(fixed_clock, 2)
    gc.disable()
    try:
        assert timers.run_due() >= len(more)
        assert not gc.isenabled()
    finally:
        gc.enable()
