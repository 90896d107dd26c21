"""db.concurrently: independent readers run beside their caller, in order, failures raised."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from giaitrinh.engine import db


def _thread() -> str:
    return threading.current_thread().name


def _reads(value):
    def reader():
        with db.read_only() as session:
            return session.execute(text("SELECT :v"), {"v": value}).scalar_one(), _thread()
    return reader


def test_readers_run_beside_the_caller_and_keep_their_order(database):
    results = db.concurrently(_reads(1), _reads(2), _reads(3))
    assert [value for value, _ in results] == [1, 2, 3]
    first, *others = [where for _, where in results]
    assert first == _thread()
    assert all(where.startswith("giaitrinh-reader") for where in others)


def test_they_overlap_in_time(database):
    # Two readers that each wait for the other can only finish if they run at once.
    both = threading.Barrier(2, timeout=10)

    def meets():
        both.wait()
        return _reads("met")()[0]

    assert db.concurrently(meets, meets) == ["met", "met"]


def test_a_readers_failure_is_raised_after_the_others_finished(database):
    finished = []

    def fails():
        raise ValueError("hỏng (broken)")

    def slow():
        both.wait()
        finished.append("slow")
        return 1

    both = threading.Barrier(2, timeout=10)

    def first():
        both.wait()
        return 0

    with pytest.raises(ValueError, match="broken"):
        db.concurrently(first, fails, slow)
    assert finished == ["slow"]


def test_the_callers_failure_waits_for_the_readers_beside_it(database):
    finished = threading.Event()

    def slow():
        finished.wait(0.2)
        finished.set()
        return 1

    def fails():
        raise KeyError("gone")

    with pytest.raises(KeyError):
        db.concurrently(fails, slow)
    assert finished.is_set()


def test_a_reader_thread_runs_nested_readers_itself(database):
    def nested():
        return [where for _, where in db.concurrently(_reads(1), _reads(2))]

    _, inner = db.concurrently(_reads(0), nested)
    assert len(set(inner)) == 1 and inner[0].startswith("giaitrinh-reader")


def test_with_every_reader_thread_busy_the_caller_runs_them(database):
    release = threading.Event()
    busy = threading.Barrier(db.READER_THREADS + 1, timeout=10)

    def hold():
        busy.wait()
        release.wait(10)
        return "held"

    holder = threading.Thread(target=lambda: db.concurrently(lambda: None, *[hold] * db.READER_THREADS))
    holder.start()
    try:
        busy.wait()  # every reader thread is now taken
        assert {where for _, where in db.concurrently(_reads(1), _reads(2))} == {_thread()}
    finally:
        release.set()
        holder.join(10)
    assert not holder.is_alive()


def test_a_database_one_connection_serves_reads_in_turn(fixed_clock):
    db.init_db("sqlite://")
    try:
        assert {where for _, where in db.concurrently(_reads(1), _reads(2))} == {_thread()}
    finally:
        db.get_engine().dispose()


def test_a_city_board_reads_beside_its_pass_over_the_open_cases(world, people, fixed_clock, monkeypatch):
    from giaitrinh.engine import clock, timers
    from giaitrinh.engine.services import supervision

    from .helpers import submit

    late = submit()["code"]
    fixed_clock.set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    timers.run_due()
    where = []
    real = db.concurrently

    def watched(*calls):
        where.append(len(calls))
        return real(*calls)

    monkeypatch.setattr(db, "concurrently", watched)
    city = supervision.dashboard(people["thanhtratp"])
    assert where == [2]
    assert city["totals"]["stuck"] == supervision.count_instances(people["thanhtratp"], stuck=True) == 1
    [case] = supervision.list_instances(people["thanhtra"], stuck=True)["items"]
    assert case["code"] == late
    unit = supervision.dashboard(people["thanhtra"], unit=case["unit"])
    assert where == [2]  # a single unit's board makes its two passes in turn
    assert unit["totals"]["stuck"] == 1
