"""The real PostgreSQL server of these machines (127.0.0.1:5432, trust auth), for tests.

Each test database is created and dropped by the tests themselves. When the
server cannot be reached the tests that need it are skipped on a developer's
machine and fail in CI (CI=true), where it must be there.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

from .components import missing

ADMIN_DSN = os.environ.get("GIAITRINH_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _connect_admin():
    import psycopg

    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)


def available() -> str | None:
    """None if the server answers, else why not."""
    try:
        with _connect_admin() as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL at {ADMIN_DSN} unreachable: {exc}"


def require() -> None:
    why = available()
    if why is None:
        return
    missing(why)


def url_for(name: str) -> str:
    params = dict(part.split("=", 1) for part in ADMIN_DSN.split())
    return (f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{name}")


def create_database(prefix: str = "giaitrinh_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _connect_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with _connect_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(prefix: str = "giaitrinh_test"):
    """A new, empty database; its URL; dropped afterwards whatever happened."""
    require()
    name = create_database(prefix)
    try:
        yield url_for(name)
    finally:
        drop_database(name)
