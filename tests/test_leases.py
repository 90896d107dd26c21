"""Leases and fencing of timer jobs, on SQLite and PostgreSQL: a worker whose lease expired or
whose job changed commits nothing; losing a race is not a failure; on SQLite one scheduler."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import func, select

from giaitrinh.engine import clock, db, timers
from giaitrinh.engine.errors import Conflict
from giaitrinh.engine.models import AuditEvent, Job
from giaitrinh.engine.services import supervision

from .helpers import submit


def _timer_job() -> SimpleNamespace:
    with db.read_only() as session:
        job = session.execute(select(Job).where(Job.kind == "timer")).scalar_one()
        return SimpleNamespace(status=job.status, attempts=job.attempts, lease_owner=job.lease_owner,
                               last_error=job.last_error)


def _fired() -> int:
    with db.read_only() as session:
        return session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "timer_fired")).scalar_one()


def _as(monkeypatch, name: str) -> None:
    monkeypatch.setattr(timers, "owner", lambda: name)


def test_a_worker_whose_lease_expired_cannot_commit(world, fixed_clock, monkeypatch):
    submit()
    fixed_clock.advance(days=11)
    _as(monkeypatch, "worker-a")
    [(job_id, _request, fence_a)] = timers._claim(clock.now(), 10)
    # Worker A stalls past its lease; worker B finds the job free, claims and fires it.
    later = clock.wall_now() + timers.LEASE + timedelta(seconds=1)
    monkeypatch.setattr(clock, "wall_now", lambda: later)
    _as(monkeypatch, "worker-b")
    [(same_job, _request, fence_b)] = timers._claim(clock.now(), 10)
    assert same_job == job_id and fence_b != fence_a
    assert timers.fire_job(job_id, fence_b) is True
    # A wakes up and tries to finish what it started: nothing happens.
    _as(monkeypatch, "worker-a")
    assert timers.fire_job(job_id, fence_a) is False
    assert _fired() == 1 and _timer_job().status == "done"


def test_a_live_lease_keeps_other_workers_away(world, fixed_clock, monkeypatch):
    submit()
    fixed_clock.advance(days=11)
    _as(monkeypatch, "worker-a")
    [(job_id, _request, fence)] = timers._claim(clock.now(), 10)
    _as(monkeypatch, "worker-b")
    assert timers._claim(clock.now(), 10) == []
    assert timers.fire_job(job_id) is False  # a direct call respects the live lease too
    _as(monkeypatch, "worker-a")
    assert timers.fire_job(job_id, fence) is True and _fired() == 1


def test_a_job_changed_after_the_claim_is_not_fired_from_the_old_plan(world, people, fixed_clock, monkeypatch):
    sub = submit()
    fixed_clock.advance(days=11)
    _as(monkeypatch, "worker-a")
    [(job_id, _request, fence)] = timers._claim(clock.now(), 10)
    supervision.suspend(sub["code"], people["thanhtra"], "unable")  # pauses the clock: revokes the lease
    assert timers.fire_job(job_id, fence) is False
    job = _timer_job()
    assert job.status == "paused" and job.lease_owner is None and _fired() == 0
    supervision.resume(sub["code"], people["thanhtra"])
    fixed_clock.advance(days=20)
    assert timers.run_due() == 1 and _fired() == 1


def test_losing_a_race_is_not_counted_as_a_failure(world, fixed_clock, monkeypatch):
    submit()
    fixed_clock.advance(days=11)
    real_fire = timers.runtime.fire_timer
    contended = [True]  # for the whole of the first sweep (SQLite's batch tries it twice)

    def conflicted(*args, **kwargs):
        if contended[0]:
            raise Conflict("modified concurrently")
        return real_fire(*args, **kwargs)

    monkeypatch.setattr(timers.runtime, "fire_timer", conflicted)
    assert timers.run_due() == 0
    contended[0] = False
    job = _timer_job()
    assert (job.status, job.attempts, job.lease_owner, job.last_error) == ("waiting", 0, None, None)
    assert timers.run_due() == 0  # held back a moment: a sweep does not spin on a contended job
    later = clock.wall_now() + timers.RACE_HOLD + timedelta(seconds=1)
    monkeypatch.setattr(clock, "wall_now", lambda: later)
    assert timers.run_due() == 1
    assert _timer_job().status == "done" and _fired() == 1


_HOLDER = """
import sys, time
from giaitrinh.engine import db, timers
db.init_db(sys.argv[1])
print(timers._may_run_here(), flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_only_one_scheduler_per_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, url, "30"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "True"
        second = subprocess.run([sys.executable, "-c", _HOLDER, url, "0"], capture_output=True, text=True, env=env,
                                timeout=60)
        assert second.stdout.strip() == "False", second.stderr
        assert (tmp_path / "one.db.scheduler.lock").read_text().strip().endswith(f":{first.pid}")
    finally:
        first.kill()
        first.wait()
    # The holder died: its lock went with it and the next process takes over.
    third = subprocess.run([sys.executable, "-c", _HOLDER, url, "0"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert third.stdout.strip() == "True", third.stderr
