"""Shared fixtures: a fresh database per test, the engine clock under the test's control."""
from __future__ import annotations

import copy
import json
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
    if request.param == "sqlite":
        _board_agrees_with_the_rows(engine)
    engine.dispose()


def _board_agrees_with_the_rows(engine) -> None:
    """Whatever a test wrote, SQLite's kept counts of each unit's open cases are the rows' own."""
    from giaitrinh.engine import models

    with engine.connect() as conn:
        kept = {row[0]: tuple(row[1:]) for row in conn.exec_driver_sql(
            f"SELECT unit_code, open_cases, overdue_cases, escalated_cases FROM {models.BOARD_TABLE.name} "
            "WHERE open_cases != 0 OR overdue_cases != 0 OR escalated_cases != 0")}
        counted = {row[0]: tuple(row[1:]) for row in conn.exec_driver_sql(models.BOARD_FROM_ROWS)}
    assert kept == counted, "requests_board disagrees with the open cases' rows"


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
    """Every state the engine writes in any test reads back as SpiffWorkflow's own serialization
    of the workflow does (the text itself is orjson's, compact)."""
    from giaitrinh.engine import runtime

    fast = runtime.dump

    def checked(running):
        text = fast(running)
        own = runtime._serializer.serialize_json(running.workflow)
        assert runtime.state_dict(text) == json.loads(own)
        assert runtime._is_compact(text) or text == own  # the standard library's only as a fallback
        return text

    monkeypatch.setattr(runtime, "dump", checked)


def _same_workflow(fast, spiff) -> None:
    """Two loads of one state made the same objects: tasks, their data, the workflow's own values."""
    assert list(fast.tasks) == list(spiff.tasks)
    for task_id, task in fast.tasks.items():
        other = spiff.tasks[task_id]
        assert (task.task_spec, task.state, task._parent, task._children, task.triggered, task.last_state_change,
                task.data, task.internal_data) == \
               (other.task_spec, other.state, other._parent, other._children, other.triggered,
                other.last_state_change, other.data, other.internal_data)
    assert fast.task_tree.id == spiff.task_tree.id
    assert (fast.last_task.id if fast.last_task else None) == (spiff.last_task.id if spiff.last_task else None)
    assert (fast.data, fast.correlations, fast.success, fast.completed, fast.bpmn_events) == \
           (spiff.data, spiff.correlations, spiff.success, spiff.completed, spiff.bpmn_events)
    assert list(fast.event_manager.tasks) == list(spiff.event_manager.tasks)
    from giaitrinh.engine import runtime

    assert runtime._serializer.serialize_json(fast) == runtime._serializer.serialize_json(spiff)


@pytest.fixture(autouse=True)
def _fast_load_matches_spiffworkflow(monkeypatch):
    """Every state the engine reads in any test makes the same workflow as SpiffWorkflow's own restore."""
    from giaitrinh.engine import runtime

    fast = runtime._workflow_from_dict

    def checked(dct, spec, subprocess_specs):
        workflow = fast(copy.deepcopy(dct), spec, subprocess_specs)
        _same_workflow(workflow, runtime._serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs))
        return workflow

    monkeypatch.setattr(runtime, "_workflow_from_dict", checked)


def _tree(workflow) -> list:
    """A workflow's tasks as SpiffWorkflow would store them, but when each state changed."""
    from giaitrinh.engine import runtime

    dct = runtime._serializer.to_dict(workflow)
    return [(key, {k: v for k, v in task.items() if k != "last_state_change"}) for key, task in dct["tasks"].items()]


@pytest.fixture(autouse=True)
def _walks_match_spiffworkflow(monkeypatch):
    """Every walk of a task tree the engine makes in any test finds what SpiffWorkflow's iterator
    finds, in its order; and every update of the waiting tasks leaves a copy of the tree as
    SpiffWorkflow's own update leaves another."""
    from SpiffWorkflow.bpmn.util.subworkflow import BpmnBaseWorkflow

    from giaitrinh.engine import runtime

    def checked_walk(self, first_task=None, **kwargs):
        found = list(runtime._get_tasks_iterator(self, first_task, **kwargs))
        assert found == list(runtime._shipped_get_tasks_iterator(self, first_task, **kwargs))
        return iter(found)

    def checked_update(self):
        if self is not self.top_workflow or not runtime._walkable(self):
            return runtime._update_waiting_tasks(self)
        copies = []
        for update in (runtime._shipped_update_waiting_tasks, runtime._update_waiting_tasks):
            copy_of = runtime._serializer.from_dict(runtime._serializer.to_dict(self), spec=self.spec,
                                                    subprocess_specs=self.subprocess_specs)
            copy_of.script_engine = self.script_engine
            update(copy_of)
            copies.append(_tree(copy_of))
        assert copies[0] == copies[1]
        runtime._update_waiting_tasks(self)

    monkeypatch.setattr(BpmnBaseWorkflow, "get_tasks_iterator", checked_walk)
    monkeypatch.setattr(BpmnBaseWorkflow, "update_waiting_tasks", checked_update)
