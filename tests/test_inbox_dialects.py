"""One process serving SQLite after PostgreSQL (the test suite does; so does a tool pointed at
both): the inbox statements, built once per shape, are built for each database's dialect."""
from giaitrinh import demo
from giaitrinh.engine import calendar as cal
from giaitrinh.engine import db
from giaitrinh.engine.models import Base
from giaitrinh.engine.services import tasks

from .conftest import _empty_postgres
from .helpers import submit


def _reception_inbox() -> tuple[list[str], str]:
    demo._setup_accounts()
    demo._deploy()
    code = submit()["code"]
    reception = demo._actor("tiepnhan")
    return [item["request_code"] for item in tasks.list_tasks(reception, scope="unit")["items"]], code


def test_the_same_inbox_on_postgresql_then_on_sqlite(postgres_url, tmp_path, fixed_clock):
    tasks._inbox_query.cache_clear()
    try:
        _empty_postgres(postgres_url)
        cal.invalidate_cache()
        found, code = _reception_inbox()
        assert code in found
        db.get_engine().dispose()
        engine = db.init_db(f"sqlite:///{tmp_path / 'after.db'}")
        Base.metadata.create_all(engine)
        cal.invalidate_cache()
        found, code = _reception_inbox()  # the PostgreSQL statement (= ANY (array(...))) would fail here
        assert code in found
    finally:
        db.get_engine().dispose()
