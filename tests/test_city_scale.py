"""City scale on the real PostgreSQL server: several processes, every timer fires exactly once,
nothing is lost when a worker is killed or the database restarts.

The databases are made by the tests: a template with the demo world and 2,000 submitted
requests is built once, and each test gets its own copy (CREATE DATABASE ... TEMPLATE).
Worker processes are the real command (``giaitrinh timers run-due``, ``giaitrinh serve
--workers``) sharing the engine's dev clock through the database, which stands two working
weeks after the submissions so every acknowledgement deadline has passed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from giaitrinh import demo, migrate
from giaitrinh.engine import calendar as cal
from giaitrinh.engine import clock, db
from giaitrinh.engine.errors import Conflict
from giaitrinh.engine.services import requests as request_service
from giaitrinh.engine.services import tasks

from . import pg
from .conftest import START
from .helpers import CITIZEN, task_id

TIMERS = 2000
# Two working weeks after the submissions: every "acknowledge by" has passed.
AFTER_DEADLINES = datetime.fromisoformat("2026-12-04T09:00:00+07:00")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scalar(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def template():
    """A database with the demo world and TIMERS submitted requests, each with a waiting timer."""
    pg.require()
    name = pg.create_database("giaitrinh_tpl")
    url = pg.url_for(name)
    previous = clock.get_clock()
    try:
        migrate.upgrade(url)
        engine = db.init_db(url)
        clock.set_clock(clock.FixedClock(START))
        cal.invalidate_cache()
        demo._setup_accounts()
        demo._deploy()
        for i in range(TIMERS):
            request_service.submit(dict(CITIZEN, subject=f"Yêu cầu số {i}"))
        engine.dispose()  # a template must have no connection when it is copied
        yield name
    finally:
        clock.set_clock(previous)
        pg.drop_database(name)


@pytest.fixture
def city(template):
    """This test's own copy of the template, with the shared dev clock past every deadline."""
    name = pg.create_database("giaitrinh_city")
    with pg._connect_admin() as conn:  # noqa: SLF001
        conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = pg.url_for(name)
    offset = (AFTER_DEADLINES - datetime.now(timezone.utc)).total_seconds()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO settings (key, value) VALUES ('dev_clock_offset_seconds', :v)"),
                     {"v": repr(offset)})
    engine.dispose()
    try:
        yield url
    finally:
        pg.drop_database(name)


def _env(url: str, tmp_path, **extra) -> dict:
    env = dict(os.environ, DATABASE_URL=url, GIAITRINH_DEV_CLOCK="1", GIAITRINH_SECRET_KEY="test-secret",
               GIAITRINH_INSTANCE=str(tmp_path / "instance"), PYTHONPATH=ROOT)
    env.pop("GIAITRINH_CLOCK_START", None)
    env.update(extra)
    return env


def _worker(url: str, tmp_path, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "giaitrinh.cli", "timers", "run-due"],
                            env=_env(url, tmp_path, **extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _firings(url: str) -> tuple[int, int]:
    """(timer_fired audit events, distinct jobs they name)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT count(*), count(DISTINCT (after::jsonb)->>'job') FROM audit_events WHERE action = 'timer_fired'"
        )).one()
    engine.dispose()
    return row[0], row[1]


def _assert_each_timer_fired_once(url: str) -> None:
    events, jobs = _firings(url)
    assert (events, jobs) == (TIMERS, TIMERS)
    assert _scalar(url, "SELECT count(*) FROM jobs WHERE kind = 'timer' AND status = 'done' AND fired_at IS NOT NULL") \
        == TIMERS
    assert _scalar(url, "SELECT count(*) FROM jobs WHERE kind = 'timer' AND status IN ('waiting', 'incident')") == 0
    # One escalation per request, and every request flagged overdue, none twice.
    assert _scalar(url, "SELECT count(*) FROM escalations") == TIMERS
    assert _scalar(url, "SELECT count(DISTINCT request_id) FROM escalations") == TIMERS
    assert _scalar(url, "SELECT count(*) FROM requests WHERE overdue") == TIMERS
    assert _scalar(url, "SELECT count(*) FROM tasks WHERE step LIKE 'escalate%' AND status = 'open'") == TIMERS


def test_four_workers_race_and_every_timer_fires_exactly_once(city, tmp_path):
    workers = [_worker(city, tmp_path) for _ in range(4)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    fired_per_worker = [int(out.strip().rsplit(" ", 1)[-1]) for out, _ in outputs]
    assert sum(fired_per_worker) == TIMERS
    assert sum(1 for n in fired_per_worker if n > 0) >= 2, fired_per_worker  # they really shared the work
    _assert_each_timer_fired_once(city)


def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(city, tmp_path):
    lease = {"GIAITRINH_JOB_LEASE_SECONDS": "3"}
    victim = _worker(city, tmp_path, **lease)
    # Kill it in the middle of a batch: it has fired some timers and holds leases on at least
    # twenty more it has not fired yet (a batch takes about a second, so the kill lands inside it).
    deadline = time.monotonic() + 120
    held_sql = "SELECT count(*) FROM jobs WHERE status = 'waiting' AND lease_owner IS NOT NULL"
    while time.monotonic() < deadline:
        if _firings(city)[0] >= 100 and _scalar(city, held_sql) >= 20:
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    done_at_kill = _firings(city)[0]
    assert 100 <= done_at_kill < TIMERS, "the victim must die in the middle of its work"
    held = _scalar(city, held_sql)
    assert held > 0, "the killed worker held leases on jobs it had not fired"
    # A survivor fires everything not leased; the dead worker's leases are left alone until they expire.
    survivor = _worker(city, tmp_path, **lease)
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-2000:]
    time.sleep(3.5)  # the lease is wall-clock time, not the engine's clock
    again = _worker(city, tmp_path, **lease)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    _assert_each_timer_fired_once(city)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(base: str, path: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


@pytest.fixture
def small_city(tmp_path):
    """A migrated database with the demo world and the dev clock at START."""
    with pg.fresh_database("giaitrinh_restart") as url:
        migrate.upgrade(url)
        engine = db.init_db(url)
        previous = clock.get_clock()
        clock.set_clock(clock.FixedClock(START))
        cal.invalidate_cache()
        try:
            demo._setup_accounts()  # noqa: SLF001
            demo._deploy()  # noqa: SLF001
        finally:
            clock.set_clock(previous)
            engine.dispose()
        yield url


def test_the_service_recovers_by_itself_when_the_database_restarts_under_load(small_city, tmp_path):
    if os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        pg.require()
        pytest.fail("restarting the local PostgreSQL needs root and pg_ctlcluster") if os.environ.get("CI") \
            else pytest.skip("cannot restart the local PostgreSQL here")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(small_city, tmp_path, GIAITRINH_CLOCK_START=START.isoformat(), GIAITRINH_SCHEDULER_POLL_SECONDS="1")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "giaitrinh.cli", "serve", "--workers", "2", "--threads", "4",
                               "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        _wait_for(lambda: urllib.request.urlopen(base + "/", timeout=2).status == 200, 60, "the server")
        results: list[tuple[float, int, str | None]] = []
        odd: list = []
        stop = threading.Event()
        lock = threading.Lock()

        def citizen(n: int):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    status, body = _post(base, "/api/v1/requests", dict(CITIZEN, subject=f"Tải {n}-{i}"))
                except OSError as exc:  # the server itself must stay up: a refused socket is a failure
                    status, body = -1, {"error": str(exc)}
                with lock:
                    results.append((time.monotonic(), status, body.get("code")))
                    if status not in (201, 503):
                        odd.append((status, body))

        load = [threading.Thread(target=citizen, args=(n,)) for n in range(4)]
        for t in load:
            t.start()
        time.sleep(2)
        restarted_at = time.monotonic()
        _restart_postgres()
        restarted = time.monotonic()
        _wait_for(lambda: any(t > restarted and s == 201 for t, s, _ in list(results)), 60,
                  "a submission accepted after the restart")
        time.sleep(2)
        stop.set()
        for t in load:
            t.join(timeout=60)

        statuses = {s for _, s, _ in results}
        assert statuses <= {201, 503}, f"only success or 'retry later' while the database restarts: {statuses} {odd[:5]}"
        before = [code for t, s, code in results if s == 201 and t < restarted_at]
        after = [code for t, s, code in results if s == 201 and t > restarted]
        assert before and after
        accepted = [code for _, s, code in results if s == 201]
        engine = create_engine(small_city)
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT code FROM requests")).scalars())
            audited = conn.execute(text("SELECT count(*) FROM audit_events WHERE action = 'submitted'")).scalar_one()
        engine.dispose()
        assert set(accepted) <= stored, "a request the citizen was told about is missing"
        assert len(accepted) == len(set(accepted))
        assert len(stored) <= len(accepted) + sum(1 for _, s, _ in results if s == 503)
        assert audited == len(stored)

        # The schedulers inside the workers survived too: move the shared clock past the
        # acknowledgement deadline and the server fires the timers by itself.
        engine = create_engine(small_city)
        with engine.begin() as conn:
            offset = (AFTER_DEADLINES - datetime.now(timezone.utc)).total_seconds()
            conn.execute(text("UPDATE settings SET value = :v WHERE key = 'dev_clock_offset_seconds'"),
                         {"v": repr(offset)})
        engine.dispose()
        _wait_for(lambda: _scalar(small_city, "SELECT count(*) FROM requests WHERE overdue") == len(stored),
                  90, "the scheduler to escalate every request")
        events, jobs = _firings(small_city)
        assert events == jobs == len(stored)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        _wait_for(lambda: pg.available() is None, 60, "PostgreSQL to be back")
