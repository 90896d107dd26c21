"""Shared fixtures: a fresh database per test, the engine clock under the test's control."""
from __future__ import annotations

import os
from datetime import datetime

import pytest

from giaitrinh import demo
from giaitrinh.engine import calendar as cal
from giaitrinh.engine import clock, db, timers
from giaitrinh.engine.models import Base

from . import pg

os.environ.setdefault("GIAITRINH_SECRET_KEY", "test-secret")
# The suite submits hundreds of requests from one address; tests/test_security.py turns the limits on.
os.environ.setdefault("GIAITRINH_RATE_LIMITS", "off")

# Friday 20 November 2026, 09:00 in Hà Nội: the calendar example of PRODUCT.md.
START = datetime.fromisoformat("2026-11-20T09:00:00+07:00")


@pytest.fixture
def fixed_clock():
    previous = clock.get_clock()
    fixed = clock.FixedClock(START)
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(previous)


@pytest.fixture(scope="session")
def postgres_url():
    """One PostgreSQL database for the session, built by the alembic migrations (not create_all)."""
    from giaitrinh import migrate

    with pg.fresh_database() as url:
        migrate.upgrade(url)
        yield url


def _empty_postgres(url: str):
    engine = db.init_db(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, fixed_clock):
    """An empty database of the test's own: every engine test runs on SQLite and on PostgreSQL."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        engine = _empty_postgres(url)
    else:
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = db.init_db(url)
        Base.metadata.create_all(engine)
    cal.invalidate_cache()
    yield url
    timers.stop_scheduler()
    engine.dispose()


@pytest.fixture
def world(database):
    """Units MX and GM, the demo accounts and the deployed lifecycle."""
    demo._setup_accounts()
    demo._deploy()
    return database


@pytest.fixture
def people(world):
    return {username: demo._actor(username) for username, _, _ in demo.USERS}


@pytest.fixture(autouse=True)
def _fast_dump_matches_spiffworkflow(monkeypatch):
    """Every state the engine writes in any test is byte-for-byte SpiffWorkflow's own serialization."""
    from giaitrinh.engine import runtime

    fast = runtime.dump

    def checked(running):
        text = fast(running)
        assert text == runtime._serializer.serialize_json(running.workflow)
        return text

    monkeypatch.setattr(runtime, "dump", checked)
