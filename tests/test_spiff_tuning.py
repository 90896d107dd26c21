"""What the engine changes in SpiffWorkflow for speed (engine/runtime.py) changes nothing it does."""
from __future__ import annotations

import logging

from SpiffWorkflow import task as spiff_task

from giaitrinh.engine import runtime

from .helpers import do, submit


def test_state_changes_are_logged_as_spiffworkflow_logs_them_when_the_logger_writes(world, people, caplog):
    assert spiff_task.Task._set_state is runtime._set_state
    code = submit()["code"]
    with caplog.at_level(logging.INFO, logger="spiff.task"):
        do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    changes = [r for r in caplog.records if r.name == "spiff.task" and r.getMessage().startswith("State changed to ")]
    assert changes, "no state change logged"
    completed = [r for r in changes if r.task_spec == "receive" and r.getMessage() == "State changed to COMPLETED"]
    assert completed and completed[0].state == "COMPLETED" and completed[0].elapsed >= 0
    assert {"workflow_spec", "task_id", "task_type", "last_state_change", "parent"} <= set(vars(completed[0]))


def test_nothing_is_built_for_a_logger_that_writes_nothing(world, people, monkeypatch):
    built = []
    real = spiff_task.Task.collect_log_extras
    monkeypatch.setattr(spiff_task.Task, "collect_log_extras", lambda self, dct=None: built.append(1) or real(self, dct))
    code = submit()["code"]
    assert not spiff_task.logger.isEnabledFor(logging.INFO)
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    assert built == []


def test_the_walks_are_taken_only_where_they_visit_what_the_iterator_visits(world, people, monkeypatch):
    from types import GeneratorType

    from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
    from SpiffWorkflow.util.task import TaskState

    from giaitrinh.engine import db
    from giaitrinh.engine.models import Request
    from giaitrinh.engine.services import _common

    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    with db.read_only() as session:
        request = session.query(Request).filter_by(code=code).one()
        workflow = _common.load_running(session, request)[0].workflow
    walk = runtime._get_tasks_iterator
    assert isinstance(walk(workflow, state=TaskState.READY), GeneratorType)
    assert [t.task_spec.name for t in walk(workflow, state=TaskState.READY, manual=True)] == ["assign"]
    # Anything else asked, a start below the root, or a tree that deep: SpiffWorkflow's own iterator.
    assert isinstance(walk(workflow, state=TaskState.READY, spec_name="assign"), BpmnTaskIterator)
    assert isinstance(walk(workflow, workflow.task_tree, state=TaskState.READY), BpmnTaskIterator)
    monkeypatch.setattr(runtime, "_WALK_MAX_TASKS", len(workflow.tasks))
    assert isinstance(walk(workflow, state=TaskState.READY), BpmnTaskIterator)


def test_task_ids_are_version_4_uuids_as_spiffworkflow_writes_them():
    from uuid import UUID

    ids = {runtime._new_task_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in list(ids)[:200]:
        parsed = UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == "specified in RFC 4122"
    assert spiff_task.uuid4 is runtime._new_task_id


def test_task_ids_drawn_in_bulk_are_never_the_same_in_two_threads_or_after_a_fork():
    import os
    import threading

    made: dict[str, list[str]] = {}

    def make(name: str) -> None:
        made[name] = [runtime._new_task_id() for _ in range(1000)]  # past one 4 KiB draw

    threads = [threading.Thread(target=make, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for ids in made.values() for text in ids]
    assert len(set(every)) == len(every) == 3000

    runtime._new_task_id()  # this process holds undrawn bytes a child would inherit
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, runtime._new_task_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    assert theirs and theirs != runtime._new_task_id()
