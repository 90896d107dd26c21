"""The hot rows written past the unit of work (engine/rowwrites.py): the same rows as the unit of
work writes, the same conflicts, the same rollbacks."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm.exc import StaleDataError

from giaitrinh.engine import clock, db, rowwrites
from giaitrinh.engine.models import Job, Request, Task, WorkflowState

from .helpers import do, refreshes_while, submit


def _statements_while(action) -> list[str]:
    """What went through SQLAlchemy's execution (the direct writes do not)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()[:3]).upper())

    event.listen(db.get_engine(), "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(db.get_engine(), "before_cursor_execute", record)
    return seen


def _request(session, code: str) -> Request:
    return session.execute(select(Request).where(Request.code == code)).scalar_one()


def _submitted(monkeypatch, direct: bool) -> str:
    """A new case's code, the hot rows written directly or by the unit of work from now on."""
    monkeypatch.setattr(rowwrites, "enabled", direct)
    return submit()["code"]


def _lifecycle(people) -> str:
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    do(code, "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    return code


# Columns that differ between any two cases whoever writes them: their numbers and keys, what
# holds the SpiffWorkflow task ids (random) or a document's number, and the digests of those.
_OWN = {"id", "code", "token_hash", "request_id", "spiff_task_id", "state", "number", "symbol", "fields",
        "attachments", "secret"}


def _same_for_every_case(value, code: str):
    if isinstance(value, (dict, list)):  # PostgreSQL's JSON columns come back decoded
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if not isinstance(value, str):
        return value
    value = re.sub(r"\b\d+/(?=[A-ZĐ]+-)", "<number>/", value.replace(code, "<code>"))  # 1/TB-UBND
    return re.sub(r"\b[0-9a-f]{64}\b", "<digest>", value)


def _rows(code: str) -> dict[str, list[tuple]]:
    """The case's rows as the database holds them (raw values: a JSON null is not a NULL)."""
    with db.read_only() as session:
        request_id = session.execute(select(Request.id).where(Request.code == code)).scalar_one()
        found = {}
        for table, key in (("requests", "id"), ("tasks", "request_id"), ("jobs", "request_id"),
                           ("workflow_states", "request_id"), ("notifications", "request_id"),
                           ("outbox_messages", "request_id"), ("documents", "request_id"),
                           ("audit_events", "request_id")):
            result = session.execute(text(f"SELECT * FROM {table} WHERE {key} = :id ORDER BY 1"), {"id": request_id})
            columns = list(result.keys())
            found[table] = sorted(
                tuple((column, _same_for_every_case(value, code))
                      for column, value in zip(columns, row)
                      if column not in _OWN and not column.endswith(("hash", "sha256")))
                for row in result)
        return found


def test_the_direct_writes_are_the_rows_the_unit_of_work_writes(world, people, monkeypatch):
    monkeypatch.setattr(rowwrites, "enabled", False)
    by_unit_of_work = _rows(_lifecycle(people))
    monkeypatch.setattr(rowwrites, "enabled", True)
    direct = _rows(_lifecycle(people))
    assert by_unit_of_work["tasks"] and by_unit_of_work["jobs"] and by_unit_of_work["notifications"]
    assert direct == by_unit_of_work


def test_a_completion_writes_the_case_rows_past_the_unit_of_work(world, people):
    code = submit()["code"]
    statements = _statements_while(lambda: do(code, "receive", people["tiepnhan"], {"decision": "accept"}))
    for table in ("REQUESTS", "TASKS", "WORKFLOW_STATES", "JOBS"):
        assert f"UPDATE {table} SET" not in statements
        assert f"INSERT INTO {table}" not in statements
    with db.read_only() as session:
        request = _request(session, code)
        assert request.status == "accepted" and request.current_step == "assign"
        assert session.get(WorkflowState, request.id).version == 2
        steps = {t.step: t.status for t in session.execute(select(Task).where(Task.request_id == request.id)).scalars()}
        assert steps == {"receive": "completed", "assign": "open"}


def test_a_row_changed_behind_the_session_is_stale(world):
    code = submit()["code"]
    with pytest.raises(StaleDataError), db.transaction() as session:
        request = _request(session, code)
        state = session.get(WorkflowState, request.id)
        session.execute(text("UPDATE workflow_states SET version = version + 1 WHERE request_id = :id"),
                        {"id": request.id})
        state.state = state.state + " "
        session.flush()
    with db.read_only() as session:
        request = _request(session, code)
        assert session.get(WorkflowState, request.id).version == 1  # the whole transaction rolled back


def test_a_rollback_leaves_the_rows_as_they_were_and_the_objects_read_again(world):
    code = submit()["code"]
    with pytest.raises(RuntimeError), db.transaction() as session:
        request = _request(session, code)
        request.current_step = "nowhere"
        session.flush()
        assert session.execute(text("SELECT current_step FROM requests WHERE code = :c"), {"c": code}).scalar_one() \
            == "nowhere"
        raise RuntimeError("the use case failed")
    with db.transaction() as session:
        request = _request(session, code)
        assert request.current_step == "receive"
        # A savepoint rolled back: what it changed is read again, what came before it stays.
        request.current_step = "before"
        session.flush()
        savepoint = session.begin_nested()
        request.current_step = "inside"
        session.flush()
        savepoint.rollback()
        assert request.current_step == "before"


def test_a_new_row_gets_its_number_and_its_defaults(world):
    code = submit()["code"]
    with db.transaction() as session:
        request = _request(session, code)
        job = Job(request_id=request.id, spiff_task_id="t-1", step="extra", due_at=clock.now(), created_at=clock.now())
        session.add(job)
        session.flush()
        assert job.id is not None and job in session and job not in session.new
        assert (job.kind, job.status, job.attempts, job.version) == ("timer", "waiting", 0, 1)
        job.status = "done"  # and written again, at its version
        session.flush()
        assert job.version == 2
    with db.read_only() as session:
        row = session.execute(text("SELECT kind, status, attempts, version FROM jobs WHERE id = :id"),
                              {"id": job.id}).one()
        assert tuple(row) == ("timer", "done", 0, 2)


def test_a_row_naming_an_unwritten_case_is_left_to_the_unit_of_work(world):
    """A task added with its request, the request not yet numbered: the unit of work orders them."""
    code = submit()["code"]
    with db.transaction() as session:
        existing = _request(session, code)
        copy = Request(**{column.key: getattr(existing, column.key) for column in Request.__table__.columns
                          if column.key not in ("id", "code")}, code=f"{code}-copy")
        task = Task(id="task-of-a-new-request", request=copy, step="receive", title="Tiếp nhận",
                    candidate_role="clerk", unit_code="MX", created_at=clock.now())
        session.add_all([copy, task])
        session.flush()
        assert task.request_id == copy.id is not None


@pytest.mark.parametrize("direct", [False, True])
def test_a_json_null_set_on_a_new_row_is_written_as_the_unit_of_work_writes_it(world, monkeypatch, direct):
    """``data=None`` given is JSON's null (the column type evaluates None); not given, SQL's NULL."""
    code = _submitted(monkeypatch, direct)
    with db.transaction() as session:
        request = _request(session, code)
        for task_id, given in (("given", {"data": None}), ("absent", {})):
            session.add(Task(id=f"{task_id}-{direct}", request_id=request.id, step="extra", title="Thêm",
                             candidate_role="clerk", unit_code="MX", created_at=clock.now(), **given))
    with db.read_only() as session:
        stored = dict(session.execute(text("SELECT id, data IS NULL FROM tasks WHERE id LIKE :p"),
                                      {"p": f"%-{direct}"}).all())
    assert {key.split("-")[0]: bool(value) for key, value in stored.items()} == {"given": False, "absent": True}


@pytest.mark.parametrize("direct", [False, True])
def test_a_row_set_to_what_it_was_still_has_its_case_facts_refreshed(world, monkeypatch, direct):
    """Nothing to write, yet the flush happens: the stuck facts' refresh runs as after any flush."""
    code = _submitted(monkeypatch, direct)
    with db.transaction() as session:
        request = _request(session, code)
        task = session.execute(select(Task).where(Task.request_id == request.id)).scalar_one()
        task.status = task.status
        assert refreshes_while(session.flush) == 1


def test_a_task_given_a_new_id_is_left_to_the_unit_of_work_which_moves_its_identity(world):
    code = submit()["code"]
    with db.transaction() as session:
        task = session.execute(select(Task).join(Request).where(Request.code == code)).scalar_one()
        old = task.id
        task.id = "renamed-task"
        session.flush()
        assert session.get(Task, "renamed-task") is task
        task.status = "cancelled"
        session.flush()  # at its new id, not a stale write at the old one
    with db.read_only() as session:
        assert session.get(Task, old) is None and session.get(Task, "renamed-task").status == "cancelled"


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.filterwarnings("ignore:New instance .* conflicts with persistent instance")  # the unit of work's
def test_a_driver_error_is_sqlalchemys_and_ends_the_transaction_as_a_failed_flush_does(world, monkeypatch, direct):
    from sqlalchemy.exc import IntegrityError, InvalidRequestError

    code = _submitted(monkeypatch, direct)
    with pytest.raises(InvalidRequestError, match="rolled back due to an exception"), db.transaction() as session:
        task = session.execute(select(Task).join(Request).where(Request.code == code)).scalar_one()
        copy_id = f"copy-{direct}"
        session.add(Task(id=copy_id, request_id=task.request_id, step="extra", title="Thêm",
                         candidate_role="clerk", unit_code="MX", created_at=clock.now()))
        session.add(Task(id=task.id, request_id=task.request_id, step="extra", title="Trùng khóa",
                         candidate_role="clerk", unit_code="MX", created_at=clock.now()))
        with pytest.raises(IntegrityError):  # Core's class, which db.lost_race and the API's 409 read
            session.flush()
        session.execute(select(Task.id)).all()
    with db.read_only() as session:
        assert session.get(Task, copy_id) is None  # nothing of the failed flush stayed
