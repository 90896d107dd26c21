"""ORM objects built from driver rows (engine/entityreads.py) are what the ORM's own loading makes."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import and_, bindparam, event, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state

from giaitrinh.engine import db, entityreads
from giaitrinh.engine.models import AuditHead, Job, Request, Task, WorkflowState
from giaitrinh.engine.services import tasks as task_service

from .helpers import do, submit, task_id

_MODELS = (Task, Request, WorkflowState, AuditHead, Job)


def _columns(obj) -> dict:
    mapper = instance_state(obj).mapper
    return {prop.key: getattr(obj, prop.key) for prop in mapper.column_attrs}


def _case(world, people) -> tuple[str, str]:
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    return code, task_id(code, "assign", people["lanhdao"])


def test_the_case_read_gives_the_objects_a_query_gives(world, people):
    code, assign = _case(world, people)
    with db.transaction() as session:
        ours = entityreads.rows(session, task_service._CASE_OF_TASK, {"task_id": assign}, _MODELS, request_model=Request)
        ours_objects = {(type(obj), instance_state(obj).key): _columns(obj) for row in ours for obj in row if obj}
        first = ours[0]
        assert first[0].request is first[1] and first[1].code == code  # the relationship set, no query
        assert all(obj in session and not session.is_modified(obj) for row in ours for obj in row if obj)
        assert not session.dirty and not session.new
        assert {type(obj) for row in ours for obj in row if obj} == {Task, Request, WorkflowState, AuditHead, Job}
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        theirs = [request, session.get(WorkflowState, request.id), session.get(AuditHead, 1)]
        theirs += session.execute(select(Task).where(Task.request_id == request.id, Task.status == "open")).scalars().all()
        theirs += session.execute(select(Job).where(Job.request_id == request.id,
                                                    Job.status.in_(("waiting", "paused")))).scalars().all()
        theirs_objects = {(type(obj), instance_state(obj).key): _columns(obj) for obj in theirs}
    assert ours_objects == theirs_objects


def test_the_objects_held_change_flush_and_expire_as_loaded_ones(world, people):
    code, assign = _case(world, people)
    with db.transaction() as session:
        rows = entityreads.rows(session, task_service._CASE_OF_TASK, {"task_id": assign}, _MODELS, request_model=Request)
        task = next(row[0] for row in rows if row[0].id == assign)
        assert task.extra_candidates == []  # a relationship left to the ORM loads lazily
        task.assignee = "chuyenvien"
        assert session.is_modified(task)
        session.flush()
        session.expire(task)
        assert task.assignee == "chuyenvien"  # read again from the row just written
        # An identity the session holds is given as it holds it, unchanged.
        task.title = "changed in memory"
        again = entityreads.rows(session, task_service._CASE_OF_TASK, {"task_id": assign}, _MODELS,
                                 request_model=Request)
        assert next(row[0] for row in again if row[0].id == assign) is task and task.title == "changed in memory"
        session.rollback()
    with db.read_only() as session:
        assert session.get(Task, assign).assignee is None  # rolled back, as the unit of work's would be


def test_an_outer_join_that_found_nothing_gives_none(world, people):
    code, assign = _case(world, people)
    other = submit()["code"]
    receive = task_id(other, "receive", people["tiepnhan"])
    nothing = (entityreads.columns_of(Task, Job).select_from(Task)
               .outerjoin(Job, and_(Job.request_id == Task.request_id, Job.kind == "no such kind"))
               .where(Task.id == bindparam("task_id")))
    with db.transaction() as session:
        (task, job), = entityreads.rows(session, nothing, {"task_id": receive}, (Task, Job))
        assert task.id == receive and job is None
        assert "request" not in task.__dict__ and task.request.code == other  # no request read: lazy


@contextmanager
def _listening(target, name):
    def on_load(*_args):
        pass

    event.listen(target, name, on_load)
    try:
        yield
    finally:
        event.remove(target, name, on_load)


def test_models_and_sessions_it_cannot_load_for_are_refused(world, people, monkeypatch):
    code, assign = _case(world, people)
    for target, name, message in ((Session, "loaded_as_persistent", "loaded_as_persistent"), (Task, "load", "load events")):
        monkeypatch.setattr(entityreads, "_models", {})
        with _listening(target, name), db.transaction() as session, pytest.raises(TypeError, match=message):
            entityreads.rows(session, task_service._CASE_OF_TASK, {"task_id": assign}, _MODELS)


def test_a_new_object_is_the_one_its_constructor_makes_and_writes_the_same_row(world, people):
    from datetime import timedelta

    from giaitrinh.engine import clock, rowwrites

    code, assign = _case(world, people)
    with db.read_only() as session:
        request_id = session.execute(select(Request.id).where(Request.code == code)).scalar_one()
    due = clock.now() + timedelta(days=3)
    values = dict(request_id=request_id, kind="timer", spiff_task_id="t-1", step="assign", due_at=due,
                  status="waiting", created_at=clock.now())
    made = entityreads.new(Job, **values)
    constructed = Job(**values)
    assert {k: v for k, v in made.__dict__.items() if not k.startswith("_")} == \
        {k: v for k, v in constructed.__dict__.items() if not k.startswith("_")}
    assert instance_state(made).transient and made.id is None and made.version is None
    written = {}
    for through_driver in (True, False):  # the flush's own writes, and the unit of work's
        rowwrites.enabled = through_driver
        try:
            with db.transaction() as session:
                job = entityreads.new(Job, **{**values, "spiff_task_id": f"t-{through_driver}"})
                session.add(job)
                session.flush()
                written[through_driver] = {**_columns(job), "id": None, "spiff_task_id": None}
                assert job.version == 1 and not session.is_modified(job)
        finally:
            rowwrites.enabled = True
    assert written[True] == written[False]
    with pytest.raises(TypeError, match="not a column attribute of Task"):
        entityreads.new(Task, request=None)
    with pytest.raises(TypeError, match="'colour' is not a column"):
        entityreads.new(Task, colour="red")


def test_adding_a_new_object_puts_it_in_the_session_as_session_add_does(world, people):
    from giaitrinh.engine import clock

    code, _assign = _case(world, people)
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        job = entityreads.new(Job, request_id=request.id, kind="timer", spiff_task_id="t-add", step="assign", due_at=clock.now(),
                              status="waiting", created_at=clock.now())
        entityreads.add(session, job)
        assert job in session.new and instance_state(job).pending
        entityreads.add(session, job)  # twice is once, as with session.add
        assert list(session.new).count(job) == 1
        session.flush()
        assert instance_state(job).persistent and job.id is not None
        # With a related object set, the cascade is the session's: the new request comes along.
        other = Request(code="GT-TEST-ADD", token_hash="x", definition_id=request.definition_id, unit_code="MX",
                        status="received", subject="s", content="c", channel="online", requester_kind="person",
                        requester_name="n", requester_address="a", requester_phone="p", received_at=clock.now(),
                        last_activity_at=clock.now(), deadlines={})
        task = Task(id="t-add", request=other, step="receive", title="t", candidate_role="head", unit_code="MX",
                    status="open", created_at=clock.now())
        entityreads.add(session, task)
        assert task in session.new and other in session.new
        session.rollback()
