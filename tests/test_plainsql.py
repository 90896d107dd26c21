"""Plain-column reads through the driver (engine/plainsql.py) give what Core's execution gives."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import DBAPIError, InvalidRequestError

from giaitrinh.engine import clock, db, plainsql
from giaitrinh.engine.models import Request, Task

from .helpers import do, submit

# A list parameter, values written in the statement (one a list), a datetime compared and read back.
_OPEN_OF_UNITS = (
    select(Task.id, Task.step, Task.created_at, Task.due_at, Request.code, Request.suspended_at)
    .join(Request, Request.id == Task.request_id)
    .where(Task.status == "open", Task.step.in_(("receive", "assign", "explain")),
           Task.unit_code.in_(bindparam("units", expanding=True)),
           Task.created_at <= bindparam("now"))
    .order_by(Task.id))
_COUNT = select(func.count()).select_from(Task).where(Task.step == bindparam("step"))


def test_the_same_rows_as_core(database, people):
    codes = [submit()["code"] for _ in range(3)]
    do(codes[0], "receive", people["tiepnhan"], {"decision": "accept"})
    later = clock.now() + timedelta(days=1)
    for units in (["MX"], ["MX", "TP", "XX"], ["XX"], []):
        params = {"units": units, "now": later}
        with db.reading() as connection:
            ours = plainsql.rows(connection, _OPEN_OF_UNITS, params)
        with db.get_engine().connect() as connection:
            cores = [tuple(row) for row in connection.execute(_OPEN_OF_UNITS, params)]
        assert ours == cores
        assert bool(ours) == ("MX" in units)
    with db.reading() as connection:
        rows = plainsql.rows(connection, _OPEN_OF_UNITS, {"units": ["MX"], "now": later})
    assert {row[1] for row in rows} == {"receive", "assign"}
    assert all(row[2].tzinfo is not None and row[5] is None for row in rows)  # aware datetimes, as Core's
    with db.transaction() as session:  # a session's transaction serves as well
        assert plainsql.rows(session, _COUNT, {"step": "receive"}) == [(3,)]


def test_a_driver_error_is_raised_as_sqlalchemys(database):
    with db.reading() as connection:
        assert plainsql.rows(connection, _COUNT, {"step": "receive"}) == [(0,)]
        for _ in range(2):  # when first compiled and when found compiled
            with pytest.raises(InvalidRequestError, match="'step'"):
                plainsql.rows(connection, _COUNT, {})
    bad = select(func.no_such_function(Task.id))
    with db.reading() as connection:
        with pytest.raises(DBAPIError):
            plainsql.rows(connection, bad, {})


def test_the_cache_stays_bounded(database, monkeypatch):
    monkeypatch.setattr(plainsql, "_MAX_STATEMENTS", 4)
    with db.reading() as connection:
        for step in range(10):  # a statement built per call is compiled per call, not kept forever
            plainsql.rows(connection, select(func.count()).select_from(Task).where(Task.step == f"s{step}"), {})
        cache = plainsql._reads[connection.dialect]
    assert len(cache) <= 4


def test_a_write_returning_its_rows_and_a_write_returning_none(database):
    from sqlalchemy import update

    from giaitrinh.engine.models import Counter
    from giaitrinh.engine.services import _common

    with db.transaction() as session:
        assert [_common.next_in_register(session, "test:register") for _ in range(3)] == [1, 2, 3]
    with db.transaction() as session:
        assert _common.next_in_register(session, "test:register") == 4  # kept by the commit
        with pytest.raises(TypeError, match="RETURNING"):
            plainsql.rows(session, update(Counter).values(value=0), {})
    with db.reading() as connection:
        assert plainsql.rows(connection, select(Counter.value).where(Counter.name == "test:register"), {}) == [(4,)]


def test_a_write_of_many_rows(world):
    from sqlalchemy import update

    codes = [submit()["code"] for _ in range(3)]
    rename = (update(Task.__table__).where(Task.request_id.in_(bindparam("ids", expanding=True)),
                                           Task.step.in_(("receive", "assign")))
              .values(title=bindparam("title")))
    with db.transaction() as session:
        ids = [session.execute(select(Request.id).where(Request.code == code)).scalar_one() for code in codes]
        assert plainsql.execute(session, rename, {"ids": ids[:2], "title": "Tiếp nhận"}) == 2
        assert plainsql.execute(session, rename, {"ids": [], "title": "x"}) == 0
        with pytest.raises(TypeError, match="rows"):
            plainsql.execute(session, _COUNT, {"step": "receive"})
    with db.read_only() as session:
        titles = session.execute(select(Task.title).join(Request).where(Request.code.in_(codes))
                                 .order_by(Request.id)).scalars().all()
    assert titles[:2] == ["Tiếp nhận", "Tiếp nhận"] and titles[2] != "Tiếp nhận"


def test_two_lists_of_swapped_lengths_are_two_statements(world):
    codes = [submit()["code"] for _ in range(2)]
    both = (select(func.count()).select_from(Task).join(Request, Request.id == Task.request_id)
            .where(Request.code.in_(bindparam("codes", expanding=True)),
                   Task.unit_code.in_(bindparam("units", expanding=True))))
    with db.reading() as connection:
        assert plainsql.rows(connection, both, {"codes": codes, "units": ["MX"]}) == [(2,)]
        assert plainsql.rows(connection, both, {"units": ["MX", "TP"], "codes": codes[:1]}) == [(1,)]


def test_a_read_is_one_snapshot_and_leaves_the_write_lock_to_writers(world):
    with db.reading() as connection:
        before = plainsql.rows(connection, _COUNT, {"step": "receive"})
        submit()  # a writer commits meanwhile: the reader holds no lock it waits for
        if db.is_sqlite():  # one snapshot (PostgreSQL reads what is committed, statement by statement)
            assert plainsql.rows(connection, _COUNT, {"step": "receive"}) == before
    with db.reading() as connection:
        assert plainsql.rows(connection, _COUNT, {"step": "receive"}) == [(before[0][0] + 1,)]


def test_the_calendar_read_on_a_reading_connection(database):
    from datetime import date

    from giaitrinh.engine import calendar as cal
    from giaitrinh.engine.models import CalendarDay

    with db.transaction() as session:
        now = clock.now()
        session.add(CalendarDay(day=date(2026, 12, 28), kind="day_off", note="Nghỉ bù", updated_at=now))
        session.add(CalendarDay(day=date(2026, 12, 26), kind="working_day", note="Làm bù", updated_at=now))
    cal.invalidate_cache()
    with db.reading() as connection:
        calendar = cal.load_calendar(connection)
    assert not calendar.is_working_day(date(2026, 12, 28))
    assert calendar.is_working_day(date(2026, 12, 26))  # a Saturday
