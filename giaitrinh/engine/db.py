"""Database connection and the one-transaction-per-use-case helper."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from . import attention  # noqa: F401 - every session keeps the requests' stuck facts in step
from . import rowwrites  # noqa: F401 - after attention: the hot rows' changes written at each flush
from . import walcheckpoint

_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
_reader_factory: sessionmaker[Session] | None = None
_reader_engine: Engine | None = None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers (inbox pages) go on while a task completion writes;
    # the busy timeout makes a second writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# JSON columns (a task's form data, a request's deadlines, an audit event's before and after: some
# forty values a lifecycle) written by orjson, compact UTF-8, in a fifth of the standard library's
# time, and read by it. What the standard library refuses is refused (datetimes, dataclasses:
# TypeError), what orjson cannot write exactly (an integer beyond 64 bits) the standard library
# writes, and text orjson cannot read (a NaN the standard library once wrote) it reads.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _not_json(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_text(value) -> str:
    try:
        return orjson.dumps(value, default=_not_json, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def json_value(text):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str) -> Engine:
    json_options = {"json_serializer": json_text, "json_deserializer": json_value}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **json_options)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so a
        # use case reads and writes in one serialised transaction.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            statement = "BEGIN" if conn.get_execution_options().get("giaitrinh_readonly") else "BEGIN IMMEDIATE"
            # On the driver's connection: every use case begins, and Core's handling of a fixed
            # statement cost more than SQLite running it. Its errors are wrapped as Core's would
            # be ("database is locked" is a lost race to the callers).
            try:
                conn.connection.driver_connection.execute(statement)
            except sqlite3.Error as exc:
                raise DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc

        @event.listens_for(engine, "checkin")
        def _narrow_page_cache(dbapi_connection, record):
            size = record.info.pop(_WIDENED, None)
            if size is not None and dbapi_connection is not None:
                dbapi_connection.execute(f"PRAGMA cache_size={int(size)}")

        walcheckpoint.attach(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **json_options)


# SQLite's page cache for a scheduler's batch, in KiB: its 50 firings touch some 3,000 pages of a
# city's tables and indexes, where the default 2 MiB holds 500, so each statement read the upper
# pages of its indexes again (a request's UPDATE, through eight indexes: 200 -> 110 us). Given back
# as the connection returns to the pool: a server has a connection per thread, and they keep the default.
WIDE_PAGE_CACHE_KIB = 16 * 1024
_WIDENED = "giaitrinh_page_cache_before"


def widen_page_cache(session: Session) -> None:
    """Give the connection of this session's transaction a larger page cache, until it is returned."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    fairy = connection.connection
    if _WIDENED in fairy.info:
        return
    driver = fairy.driver_connection
    fairy.info[_WIDENED] = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size=-{WIDE_PAGE_CACHE_KIB}")


def init_db(url: str) -> Engine:
    """Point the engine at a database. Called once per process (app factory, CLI, tests)."""
    global _engine, _session_factory, _reader_factory, _reader_engine
    if _engine is not None:
        walcheckpoint.detach(_engine)
        _engine.dispose()
    _engine = make_engine(url)
    _session_factory = sessionmaker(bind=_engine, expire_on_commit=False)
    # Readers must not take SQLite's write lock: lists stay fast while a writer works.
    _reader_engine = _engine.execution_options(giaitrinh_readonly=True)
    _reader_factory = sessionmaker(bind=_reader_engine, expire_on_commit=False)
    return _engine


# Engine -> its URL as a string: the key of the per-database caches (calendar, live workflows),
# which rendering the URL on every look-up made cost more than the look-up.
_database_keys: "weakref.WeakKeyDictionary[Engine, str]" = weakref.WeakKeyDictionary()


def database_key(bind) -> str:
    """The database an engine (or a session's bind) points at, as a string."""
    key = _database_keys.get(bind)
    if key is None:
        key = _database_keys[bind] = str(bind.url)
    return key


def get_engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database not initialised: call engine.db.init_db(url) first")
    return _engine


def is_sqlite() -> bool:
    return get_engine().dialect.name == "sqlite"


def refresh_statistics(engine: Engine | None = None, full: bool = False) -> str:
    """Bring SQLite's query-planner statistics (``sqlite_stat1``) up to date; returns what was done.

    Without them SQLite guesses, and at a million requests it guesses wrong: a unit's dashboard
    read all of the unit's 11,000 cases instead of the month's few through ix_requests_explained
    (60 ms instead of 3), a city's stuck count took ix_requests_list over ix_requests_attention
    (130 ms instead of 9). ``full`` (or no statistics yet) runs ANALYZE, a couple of seconds at
    a million requests; otherwise ``PRAGMA optimize`` analyses again only the tables that grew or
    shrank tenfold since, at no cost when none did. PostgreSQL's autovacuum keeps its own: nothing
    is done there.
    """
    engine = engine or get_engine()
    if engine.dialect.name != "sqlite":
        return "server"
    with engine.begin() as conn:
        known = conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").scalar_one()
        if full or not known or not conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'requests'").scalar_one():
            conn.exec_driver_sql("ANALYZE")
            return "analyze"
        conn.exec_driver_sql("PRAGMA optimize")
        return "optimize"


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work: commits when the block ends, rolls back on any exception."""
    if _session_factory is None:
        raise RuntimeError("database not initialised: call engine.db.init_db(url) first")
    session = _session_factory()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def read_only() -> Iterator[Session]:
    """A session for queries; nothing it does is committed."""
    if _reader_factory is None:
        raise RuntimeError("database not initialised: call engine.db.init_db(url) first")
    session = _reader_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


class DriverReader:
    """A pooled SQLite connection in a read transaction, for ``plainsql`` and ``calendar.load_calendar``:
    what they use of a Core connection (its ``dialect``, its pool ``connection``, its ``engine``)."""

    __slots__ = ("dialect", "connection", "engine")

    def __init__(self, engine: Engine, connection):
        self.dialect = engine.dialect
        self.connection = connection
        self.engine = engine


@contextmanager
def reading() -> Iterator[Connection | DriverReader]:
    """A connection in a read transaction, for reads of plain columns (``plainsql``): a session's
    own set-up and tear-down cost more than an inbox look-up's statement. On SQLite the pool's
    connection itself, its BEGIN and ROLLBACK sent by the driver: a Core connection's checkout,
    transaction and close cost as much again as the look-up (76 µs of its 190)."""
    if _reader_engine is None:
        raise RuntimeError("database not initialised: call engine.db.init_db(url) first")
    if _reader_engine.dialect.name != "sqlite":
        with _reader_engine.connect() as connection:
            connection.begin()
            try:
                yield connection
            finally:
                connection.rollback()
        return
    pooled = _reader_engine.raw_connection()
    try:
        driver = pooled.driver_connection
        try:
            driver.execute("BEGIN")
        except sqlite3.Error as exc:
            raise DBAPIError.instance("BEGIN", (), exc, sqlite3.Error) from exc
        try:
            yield DriverReader(_reader_engine, pooled)
        finally:
            driver.rollback()
    finally:
        pooled.close()


# -- independent reads at once ---------------------------------------------------------------

T = TypeVar("T")

# SQLite and PostgreSQL's driver let go of the GIL while a statement runs, so two counts over a
# city's 100,000 open cases take the time of one on two cores (23 -> 13 ms). Never more than this
# many reader threads in a process, whatever the server's thread count: when they are all busy,
# a reader runs in its caller's thread instead of queueing behind other pages.
READER_THREADS = 2
_reader_pool: ThreadPoolExecutor | None = None
_reader_pool_lock = threading.Lock()
_readers_free = threading.BoundedSemaphore(READER_THREADS)
_in_reader_thread = threading.local()


def _forget_reader_pool() -> None:
    # A forked child (a gunicorn worker) has none of its parent's threads: it starts its own.
    global _reader_pool, _readers_free, _reader_pool_lock
    _reader_pool, _readers_free, _reader_pool_lock = None, threading.BoundedSemaphore(READER_THREADS), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_reader_pool)


def _pool() -> ThreadPoolExecutor:
    global _reader_pool
    with _reader_pool_lock:
        if _reader_pool is None:
            _reader_pool = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="giaitrinh-reader")
        return _reader_pool


def _as_reader(call: Callable[[], T]) -> T:
    _in_reader_thread.active = True
    try:
        return call()
    finally:
        _in_reader_thread.active = False
        _readers_free.release()


def concurrently(*calls: Callable[[], T]) -> list[T]:
    """Run independent readers at once; their results in order, or the first failure raised.

    The first runs in the calling thread, each other one in a reader thread if one is free and
    in the calling thread otherwise. Each reader opens its own ``read_only`` session, so they
    do not share a snapshot: only reads whose results need not agree row for row belong here
    (a dashboard's figures, each a count at its own instant). A database one connection serves
    (in-memory SQLite) runs them one after another, and so does a reader thread (no reader waits
    for another reader's thread).
    """
    if len(calls) < 2 or getattr(_in_reader_thread, "active", False) or not isinstance(get_engine().pool, QueuePool):
        return [call() for call in calls]
    beside: dict[int, Future] = {}
    for index, call in enumerate(calls[1:], 1):
        if _readers_free.acquire(blocking=False):
            try:
                beside[index] = _pool().submit(_as_reader, call)
            except RuntimeError:  # the interpreter is shutting down: no new threads
                _readers_free.release()
    results: list = [None] * len(calls)
    try:
        results[0] = calls[0]()
        for index, call in enumerate(calls[1:], 1):
            if index not in beside:
                results[index] = call()
    finally:
        wait(beside.values())  # none outlives its caller's use case, whatever failed
    for index, future in beside.items():
        results[index] = future.result()  # a reader's failure is raised here
    return results


# PostgreSQL SQLSTATEs that mean "you lost a race, try again", not "this is broken".
_RACE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def lost_race(exc: BaseException) -> bool:
    """Another transaction got there first: the caller may simply try again."""
    from .errors import Conflict

    if isinstance(exc, (StaleDataError, Conflict)):
        return True
    if isinstance(exc, DBAPIError):
        if getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES:
            return True
        if "database is locked" in str(exc.orig):  # SQLite's busy timeout ran out
            return True
    return False


def unreachable(exc: BaseException) -> bool:
    """The server went away (restart, network): nobody's input was wrong."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None)
    if code:
        return code.startswith("08") or code.startswith("57P")  # connection exception, admin shutdown
    return isinstance(exc, OperationalError) and not is_sqlite()
