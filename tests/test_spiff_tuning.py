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
