"""The same alembic migrations build the schema the models describe, on SQLite and on PostgreSQL,
from an empty database and from every earlier revision (with data in it)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from giaitrinh import migrate
from giaitrinh.engine.models import UNMAPPED_OBJECTS, Base

from . import pg

# SQLite's reflection cannot read indexes on expressions (the supervisors' list order, migration
# 0007): alembic says it skips them there; PostgreSQL compares them.
pytestmark = pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index",
    "ignore:Skipped unsupported reflection of expression-based index")

REVISIONS = [s.revision for s in reversed(list(ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
                                                .walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
    else:
        with pg.fresh_database("giaitrinh_migrate") as url:
            yield url


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # The search's trigram structures and PostgreSQL's board index live outside the ORM
            # (engine/models.py, UNMAPPED_OBJECTS): both the migrations and create_all build them;
            # tests/test_search_index.py and the test below check them.
            context = MigrationContext.configure(conn, opts={
                "compare_type": True,
                "include_name": lambda name, type_, parents: name not in UNMAPPED_OBJECTS,
            })
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _current(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_there_is_a_history_to_walk():
    assert REVISIONS[0] == "0001" and len(REVISIONS) >= 2


def test_from_empty_to_head_matches_the_models(empty_url):
    migrate.upgrade(empty_url)
    assert _current(empty_url) == REVISIONS[-1]
    assert _differences(empty_url) == []


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_from_every_earlier_revision_with_data(empty_url, start):
    migrate.upgrade(empty_url, start)
    engine = create_engine(empty_url)
    now = datetime(2026, 11, 20, 2, 0)
    with engine.begin() as conn:  # a job written by the older schema must survive the upgrade
        conn.execute(text("INSERT INTO jobs (kind, due_at, status, attempts, created_at) "
                          "VALUES ('timer', :due, 'waiting', 0, :now)"), {"due": now, "now": now})
    engine.dispose()
    migrate.upgrade(empty_url)
    assert _differences(empty_url) == []
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT kind, status, version FROM jobs")).one()
    engine.dispose()
    assert tuple(row) == ("timer", "waiting", 1)


def test_downgrade_to_base_and_up_again(empty_url):
    config = migrate.alembic_config(empty_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert _current(empty_url) is None
    command.upgrade(config, "head")
    assert _differences(empty_url) == []


def _cases(conn, codes, now) -> None:
    """Requests as the 0009 schema holds them (and every later one: its new columns have defaults)."""
    conn.execute(text("INSERT INTO units (code, name) VALUES ('MX', 'Mỹ Xuyên')"))
    conn.execute(text("INSERT INTO definitions (key, version, status, sha256, bpmn_xml, manifest, created_at) "
                      "VALUES ('giai_trinh', 1, 'deployed', 'x', '<x/>', '{}', :now)"), {"now": now})
    for code in codes:
        conn.execute(text(
            "INSERT INTO requests (code, token_hash, definition_id, unit_code, status, closed, subject, content, "
            "channel, requester_kind, requester_name, requester_address, requester_phone, received_at, "
            "last_activity_at, deadlines, overdue, extended, outcome) VALUES (:code, :code, "
            "(SELECT id FROM definitions), 'MX', 'received', :no, 's', 'c', 'web', 'person', 'n', 'a', 'p', "
            ":now, :now, '{}', :no, :no, '{}')"), {"code": code, "now": now, "no": False})


def test_0010_flags_the_cases_with_an_unresolved_escalation(empty_url):
    migrate.upgrade(empty_url, "0009")
    engine = create_engine(empty_url)
    now = datetime(2026, 11, 20, 2, 0)
    with engine.begin() as conn:
        _cases(conn, ("ESC", "DONE", "NONE"), now)
        for code, resolved in (("ESC", None), ("ESC", now), ("DONE", now)):
            conn.execute(text(
                "INSERT INTO escalations (request_id, unit_code, step, level, raised_at, due_at, owner_role, "
                "resolved_at) VALUES ((SELECT id FROM requests WHERE code = :code), 'MX', 'receive', 1, :now, :now, "
                "'head', :resolved)"), {"code": code, "now": now, "resolved": resolved})
    engine.dispose()
    migrate.upgrade(empty_url)
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        flags = dict(conn.execute(text("SELECT code, escalated FROM requests")).all())
    engine.dispose()
    assert {code: bool(flag) for code, flag in flags.items()} == {"ESC": True, "DONE": False, "NONE": False}


def test_the_upgrade_leaves_sqlite_planner_statistics(tmp_path):
    """Without sqlite_stat1 SQLite guesses its plans, and at a million requests it guesses wrong."""
    from giaitrinh.engine import db

    url = f"sqlite:///{tmp_path / 'stats.db'}"
    migrate.upgrade(url, "0009")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _cases(conn, ("A", "B"), datetime(2026, 11, 20, 2, 0))
        migrate.upgrade(url)

        def requests_analysed() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'requests'")).scalar_one()

        assert requests_analysed()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sqlite_stat1"))
        assert db.refresh_statistics(engine) == "analyze"  # none for the cases: a full ANALYZE
        assert requests_analysed()
        assert db.refresh_statistics(engine) == "optimize"  # then only what grew or shrank tenfold
    finally:
        engine.dispose()


def _planner_objects(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return (set(conn.execute(text("SELECT stxname FROM pg_statistic_ext")).scalars())
                    | set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'requests'")).scalars()))
    finally:
        engine.dispose()


def test_postgresql_planner_objects_come_by_migration_and_by_create_all():
    # The statistics that say overdue cases are open (0011) and the open cases' board index (0012).
    from giaitrinh.engine.models import OPEN_BOARD_INDEX, REQUESTS_STATISTICS

    with pg.fresh_database("giaitrinh_migrate") as url:
        migrate.upgrade(url, "0010")
        assert not {REQUESTS_STATISTICS, OPEN_BOARD_INDEX} & _planner_objects(url)
        migrate.upgrade(url)
        assert {REQUESTS_STATISTICS, OPEN_BOARD_INDEX} <= _planner_objects(url)
        command.downgrade(migrate.alembic_config(url), "0010")
        assert not {REQUESTS_STATISTICS, OPEN_BOARD_INDEX} & _planner_objects(url)
    with pg.fresh_database("giaitrinh_migrate") as url:
        engine = create_engine(url)
        try:
            Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        assert {REQUESTS_STATISTICS, OPEN_BOARD_INDEX} <= _planner_objects(url)


def test_0013_counts_each_units_open_cases_and_keeps_them_counted(tmp_path):
    """SQLite: the board is backfilled from the rows, then its triggers follow every change."""
    from giaitrinh.engine import models

    url = f"sqlite:///{tmp_path / 'board.db'}"
    migrate.upgrade(url, "0012")
    engine = create_engine(url)
    now = datetime(2026, 11, 20, 2, 0)
    with engine.begin() as conn:
        _cases(conn, ("A", "B", "C", "D"), now)
        conn.execute(text("UPDATE requests SET overdue = 1, escalated = 1 WHERE code = 'B'"))
        conn.execute(text("UPDATE requests SET closed = 1 WHERE code = 'C'"))
    engine.dispose()
    migrate.upgrade(url)

    def board(conn):
        return {row[0]: tuple(row[1:]) for row in conn.execute(text(
            "SELECT unit_code, open_cases, overdue_cases, escalated_cases FROM requests_board"))}

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            assert board(conn) == {"MX": (3, 1, 1)}
            conn.execute(text("INSERT INTO units (code, name) VALUES ('GM', 'Gia Minh')"))
            conn.execute(text("UPDATE requests SET unit_code = 'GM' WHERE code = 'B'"))  # moved with its flags
            conn.execute(text("UPDATE requests SET overdue = 1 WHERE code = 'A'"))
            conn.execute(text("UPDATE requests SET closed = 0 WHERE code = 'C'"))  # opened again
            conn.execute(text("UPDATE requests SET subject = 'x' WHERE code = 'D'"))  # no count moves
            conn.execute(text("DELETE FROM requests WHERE code = 'D'"))
            assert board(conn) == {"MX": (2, 1, 0), "GM": (1, 1, 1)}
            assert board(conn) == {row[0]: tuple(row[1:]) for row in conn.execute(text(models.BOARD_FROM_ROWS))}
    finally:
        engine.dispose()
    command.downgrade(migrate.alembic_config(url), "0012")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert not conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'requests_board%'")).all()
    finally:
        engine.dispose()
