"""SQLite's write-ahead log copied back into the database file by a thread of its own.

In WAL mode a commit appends its pages to the log; a checkpoint later copies them into the
database file and syncs it. By default the connection whose commit takes the log past 1,000
pages does that copy itself, inside its commit: in a burst of timers every batch's commit did
(a batch of 50 firings writes about 1,400 pages, scattered over a city's indexes), at 40 ms a
commit, a third of the burst. SQLite's documentation suggests the remedy used here: the copy
runs in another thread, which waits on the disk with the GIL let go, so the use cases go on
while it syncs.

A process's first commit starts its checkpointer: a daemon thread with a connection of its own
that runs ``PRAGMA wal_checkpoint(PASSIVE)`` after commits, at most every ``PAUSE`` seconds. A
passive checkpoint takes no lock a reader or writer waits for; it copies what no reader still
needs and leaves the rest for the next one. The committing connections keep an automatic
checkpoint as a backstop, at ``BACKSTOP_PAGES``: should the thread fall behind (or die), a
commit checkpoints as before, so the log never grows without bound. After ``IDLE_SECONDS``
without a commit the thread closes its connection and ends; the next commit starts another
(a forked worker starts its own the same way, a disposed engine's thread simply ends).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# Pages (4 KiB each) the log may hold before a committing connection checkpoints it itself.
BACKSTOP_PAGES = 10_000
PAUSE = 0.05
IDLE_SECONDS = 10.0


def enabled() -> bool:
    """``GIAITRINH_BACKGROUND_CHECKPOINT=0`` leaves checkpoints to the committing connections."""
    return os.environ.get("GIAITRINH_BACKGROUND_CHECKPOINT", "1") != "0"


class Checkpointer:
    """The checkpoint thread of one database file in one process."""

    def __init__(self, path: str):
        self.path = path
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.checkpoints = 0  # how many ran, for tests and the curious

    def committed(self) -> None:
        """A commit wrote to the log: checkpoint it soon. Called on every commit, so it stays cheap."""
        self._wanted.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="giaitrinh-wal-checkpoint", daemon=True)
            self._thread.start()

    def _forget_threads(self) -> None:
        """In a forked child: the parent's thread is not here, and its locks may have been held."""
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wanted.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        connection = None
        try:
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            while not self._stopped:
                if not self._wanted.wait(IDLE_SECONDS):
                    return  # idle: the next commit starts a new thread
                if self._stopped:
                    return
                self._wanted.clear()
                self.checkpoint(connection)
                time.sleep(PAUSE)  # the commits of that while are copied together
        except sqlite3.Error:  # the file went away, or is not ours to write: the backstop checkpoints
            log.warning("background checkpoint of %s stopped", self.path, exc_info=True)
        finally:
            if connection is not None:
                connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, pages in the log, pages copied)."""
        busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return busy, logged, copied


_checkpointers: "weakref.WeakKeyDictionary[Engine, Checkpointer]" = weakref.WeakKeyDictionary()


def _after_fork_in_child() -> None:
    # A gunicorn worker starts its own thread at its first commit, with locks of its own.
    for checkpointer in list(_checkpointers.values()):
        checkpointer._forget_threads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def attach(engine: Engine) -> Checkpointer | None:
    """Checkpoint this engine's database file in the background (a file-backed SQLite one)."""
    database = engine.url.database
    if not enabled() or engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    checkpointer = Checkpointer(os.path.abspath(database))
    _checkpointers[engine] = checkpointer

    @event.listens_for(engine, "connect")
    def _backstop(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")

    @event.listens_for(engine, "commit")
    def _committed(_connection) -> None:
        checkpointer.committed()

    return checkpointer


def detach(engine: Engine) -> None:
    """Stop the engine's checkpoint thread (``init_db`` replacing it, a test ending)."""
    checkpointer = _checkpointers.pop(engine, None)
    if checkpointer is not None:
        checkpointer.stop()


def of(engine: Engine) -> Checkpointer | None:
    return _checkpointers.get(engine)
