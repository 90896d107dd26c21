"""SQLite's log checkpointed by a thread of its own, with the committing connections' backstop."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from giaitrinh.engine import db, walcheckpoint


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "giaitrinh-wal-checkpoint" and t.is_alive()]


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    yield engine
    walcheckpoint.detach(engine)
    engine.dispose()


def test_commits_are_checkpointed_by_the_thread_not_the_committer(engine):
    checkpointer = walcheckpoint.of(engine)
    assert checkpointer is not None
    with engine.connect() as conn:
        # The committing connections only checkpoint past the backstop, not SQLite's 1,000 pages.
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == walcheckpoint.BACKSTOP_PAGES
    before = checkpointer.checkpoints
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES (:b)"), [{"b": "x" * 3000} for _ in range(200)])
    assert _wait_for(lambda: checkpointer.checkpoints > before)
    assert _threads()
    # What the thread copied is in the database file: a checkpoint now has nothing left to copy,
    # and a connection that ignores the log (immutable) reads every row from the file itself.
    assert _wait_for(lambda: _nothing_left(engine))
    path = engine.url.database
    plain = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    finally:
        plain.close()


def _nothing_left(engine) -> bool:
    conn = sqlite3.connect(engine.url.database)
    try:
        busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return busy == 0 and logged == copied


def test_an_idle_thread_ends_and_the_next_commit_starts_another(engine, monkeypatch):
    monkeypatch.setattr(walcheckpoint, "IDLE_SECONDS", 0.1)
    checkpointer = walcheckpoint.of(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES ('a')"))
    first = checkpointer._thread
    assert first is not None
    assert _wait_for(lambda: not first.is_alive())
    count = checkpointer.checkpoints
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES ('b')"))
    assert _wait_for(lambda: checkpointer.checkpoints > count)
    assert checkpointer._thread is not first


def test_detach_stops_the_thread_and_the_backstop_still_holds(engine):
    checkpointer = walcheckpoint.of(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES ('a')"))
    thread = checkpointer._thread
    walcheckpoint.detach(engine)
    assert not thread.is_alive()
    assert walcheckpoint.of(engine) is None
    with engine.begin() as conn:  # a commit after it starts nothing
        conn.execute(text("INSERT INTO t (body) VALUES ('b')"))
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    assert checkpointer._thread is thread and not thread.is_alive()


def test_init_db_stops_the_checkpointer_of_the_engine_it_replaces(tmp_path):
    first = db.init_db(f"sqlite:///{tmp_path / 'one.db'}")
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    thread = walcheckpoint.of(first)._thread
    assert thread is not None and thread.is_alive()
    second = db.init_db(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        assert not thread.is_alive()
    finally:
        walcheckpoint.detach(second)
        second.dispose()


def test_switched_off_the_committing_connections_checkpoint_as_sqlite_does(tmp_path, monkeypatch):
    monkeypatch.setenv("GIAITRINH_BACKGROUND_CHECKPOINT", "0")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'off.db'}")
    try:
        assert walcheckpoint.of(engine) is None
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
    finally:
        engine.dispose()


def test_in_memory_databases_have_no_checkpointer():
    engine = db.make_engine("sqlite://")
    try:
        assert walcheckpoint.of(engine) is None
    finally:
        engine.dispose()


def test_a_forked_child_checkpoints_with_a_thread_of_its_own(engine):
    import os

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (body) VALUES ('parent')"))
    checkpointer = walcheckpoint.of(engine)
    parent_thread = checkpointer._thread
    assert parent_thread is not None and parent_thread.is_alive()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, and never return into pytest
        status = 1
        try:
            fresh = checkpointer._thread is None
            engine.dispose(close=False)  # the parent's pooled connections stay the parent's
            before = checkpointer.checkpoints
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t (body) VALUES ('child')"))
            ran = _wait_for(lambda: checkpointer.checkpoints > before)
            os.write(write, b"%d%d" % (fresh, ran))
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    try:
        report = os.read(read, 2)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert report == b"11"  # no thread inherited, and a new one checkpointed the child's commit
    assert parent_thread.is_alive()
