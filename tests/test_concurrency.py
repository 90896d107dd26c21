"""Officials acting at the same moment, on SQLite and on PostgreSQL: the instance row serialises
them, one succeeds, the others get 409, nothing is lost or done twice."""
from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from giaitrinh.engine import db
from giaitrinh.engine.errors import Conflict
from giaitrinh.engine.models import AuditEvent, Request, Task
from giaitrinh.engine.services import tasks

from .helpers import submit, task_id

OFFICIALS = 50


def _race(action, n: int) -> list[str]:
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def one():
        barrier.wait()
        try:
            action()
            outcome = "ok"
        except Conflict:
            outcome = "conflict"
        except Exception as exc:  # noqa: BLE001 - anything else fails the test, with its name
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_fifty_concurrent_completions_of_one_task_give_one_success(world, people):
    code = submit()["code"]
    target = task_id(code, "receive", people["tiepnhan"])
    results = _race(lambda: tasks.complete(target, {"decision": "accept"}, people["tiepnhan"]), OFFICIALS)
    assert sorted(set(results)) == ["conflict", "ok"], results
    assert results.count("ok") == 1
    with db.read_only() as session:
        request_id = session.execute(select(Request.id).where(Request.code == code)).scalar_one()
        completed = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "task_completed")).scalar_one()
        open_steps = sorted(session.execute(select(Task.step).where(
            Task.request_id == request_id, Task.status == "open")).scalars())
    assert completed == 1 and open_steps == ["assign"]


def test_a_claim_and_a_completion_at_once_do_not_deadlock(world, people):
    code = submit()["code"]
    target = task_id(code, "receive", people["tiepnhan"])
    turn = iter(range(OFFICIALS))

    def claim_or_complete():
        if next(turn) % 2:
            tasks.claim(target, people["tiepnhan"])
        else:
            tasks.complete(target, {"decision": "accept"}, people["tiepnhan"])

    results = _race(claim_or_complete, OFFICIALS)
    assert all(r in ("ok", "conflict") for r in results), results
    with db.read_only() as session:
        completed = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "task_completed")).scalar_one()
    assert completed == 1


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'ward.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
    engine.dispose()
