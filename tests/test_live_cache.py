"""The live-workflow cache: reused only when the row is exactly as this process saved it."""
import pytest
from sqlalchemy import select, text

from giaitrinh.engine import db, runtime
from giaitrinh.engine.errors import Conflict
from giaitrinh.engine.models import Request, WorkflowState
from giaitrinh.engine.scripting import RestrictedEnvironment
from giaitrinh.engine.services import _common, tasks

from .helpers import do, submit, task_id

_original_effects = _common.apply_status_effects


@pytest.fixture
def loads(monkeypatch):
    """Counts full deserializations (cache misses)."""
    calls = []
    original = runtime.load

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(runtime, "load", counting)
    return calls


def _load(code):
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        running, state = _common.load_running(session, request)
        return running, state.version


def test_the_process_that_saved_a_workflow_reuses_it_restricted(world, people, loads):
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    do(code, "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    assert loads == []
    running, _ = _load(code)
    assert loads == []
    # The script engine is not serialized nor trusted from the cache: set on every load.
    assert isinstance(running.workflow.script_engine.environment, RestrictedEnvironment)


def test_another_writer_invalidates_the_cached_workflow(world, people, loads):
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    # Another process moves the same instance on: it deserializes, changes, saves (version + 1).
    with db.transaction() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        state = session.get(WorkflowState, request.id)
        definition = session.get(_common.Definition, request.definition_id)
        other = runtime.load(definition, state.state, runtime.cal.WorkingCalendar())
        runtime.update_data(other, {"marker": "written elsewhere"})
        state.state = runtime.dump(other)
    loads.clear()
    running, _ = _load(code)
    assert len(loads) == 1
    ready = runtime.ready_human_tasks(running.workflow)
    assert ready and ready[0].data["marker"] == "written elsewhere"


def test_a_version_bump_alone_is_enough_to_miss(world, people, loads):
    code = submit()["code"]
    with db.transaction() as session:
        session.execute(text("UPDATE workflow_states SET version = version + 1"))
    _load(code)
    assert len(loads) == 1


def test_a_rolled_back_use_case_leaves_nothing_in_the_cache(world, people, loads, monkeypatch):
    code = submit()["code"]
    receive = task_id(code, "receive", people["tiepnhan"])

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(_common, "apply_status_effects", crash)
    with pytest.raises(RuntimeError):
        tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    monkeypatch.setattr(_common, "apply_status_effects", _original_effects)
    loads.clear()
    # The object the failed use case moved on is gone: the state is read back from the row.
    tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    assert len(loads) == 1
    assert task_id(code, "assign", people["lanhdao"])


def test_a_concurrent_state_write_during_a_completion_is_a_409_and_changes_nothing(world, people, loads, monkeypatch):
    code = submit()["code"]
    receive = task_id(code, "receive", people["tiepnhan"])

    def another_writer(session, *args, **kwargs):
        # Another writer moved the state on after this use case read it (no autoflush here).
        session.connection().exec_driver_sql("UPDATE workflow_states SET version = version + 1")
        return _original_effects(session, *args, **kwargs)

    monkeypatch.setattr(_common, "apply_status_effects", another_writer)
    with pytest.raises(Conflict):
        tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    monkeypatch.setattr(_common, "apply_status_effects", _original_effects)
    loads.clear()
    tasks.complete(receive, {"decision": "accept"}, people["tiepnhan"])
    assert len(loads) == 1  # nothing of the failed attempt was kept
    assert task_id(code, "assign", people["lanhdao"])
