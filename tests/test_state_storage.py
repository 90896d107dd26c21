"""How a workflow's state is stored: orjson's compact text, read back exactly; the standard
library's text where orjson cannot be exact, and for every state written before it."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from giaitrinh.engine import calendar as cal
from giaitrinh.engine import db, runtime
from giaitrinh.engine.errors import ValidationFailed
from giaitrinh.engine.models import Request, WorkflowState
from giaitrinh.engine.services import _common, tasks

from .helpers import do, submit, task_id


def _stored(code: str) -> tuple[str, _common.DefinitionVersion]:
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one()
        return session.get(WorkflowState, request.id).state, _common.definition(session, request.definition_id)


def _open_data(running) -> dict:
    """The data of the workflow's open tasks (``runtime.update_data`` writes into those)."""
    [task] = [t for t in runtime.open_tasks(running.workflow) if t.task_spec.name == "receive"]
    return task.data


def test_a_state_is_written_compact_and_reads_back_as_spiffworkflow_wrote_it(world, people):
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    text, definition = _stored(code)
    assert runtime._is_compact(text) and '"data":' in text
    assert "Nguy\\u" not in text  # UTF-8 as it is, not escaped: shorter rows
    running = runtime.load(definition, text, cal.WorkingCalendar())
    assert json.loads(runtime._serializer.serialize_json(running.workflow)) == json.loads(text)


def test_an_integer_beyond_64_bits_survives_exactly(world, people):
    code = submit()["code"]
    text, definition = _stored(code)
    running = runtime.load(definition, text, cal.WorkingCalendar())
    big = 2**70 + 1  # orjson refuses it, and would read it back as a float
    runtime.update_data(running, {"land_parcel_area_mm2": big})
    again = runtime.dump(running)
    assert not runtime._is_compact(again)  # the standard library's text
    loaded = runtime.load(definition, again, cal.WorkingCalendar())
    value = _open_data(loaded)["land_parcel_area_mm2"]
    assert value == big and isinstance(value, int)


def test_a_state_in_the_standard_librarys_layout_still_loads(world, people):
    code = submit()["code"]
    text, definition = _stored(code)
    running = runtime.load(definition, text, cal.WorkingCalendar())
    runtime.update_data(running, {"received_on": datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)})
    legacy = runtime._serializer.serialize_json(running.workflow)  # what every state was before orjson
    assert not runtime._is_compact(legacy)
    loaded = runtime.load(definition, legacy, cal.WorkingCalendar())
    assert _open_data(loaded)["received_on"] == datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    # Written again, compact, the typed value is still SpiffWorkflow's typed value.
    compact = runtime.dump(loaded)
    assert runtime._is_compact(compact)
    assert _open_data(runtime.load(definition, compact, cal.WorkingCalendar()))["received_on"] == \
        datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, compact", [
    ('{"data":{}}', True), ('{"data": {}}', False), ('{"purged": true}', False), ('{}', False), ('[]', False),
    ('{"a\\"b":1}', False), ('{"', False),
])
def test_only_compact_text_goes_to_orjson(text, compact):
    assert runtime._is_compact(text) is compact


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_form_refuses_nan_and_infinity_on_its_field(world, people, value):
    code = submit()["code"]
    actor = people["tiepnhan"]
    with pytest.raises(ValidationFailed) as failed:
        tasks.complete(task_id(code, "receive", actor), {"decision": "accept", "note": {"score": [1, value]}}, actor)
    assert failed.value.fields == {"note.score.1": "Phải là một số hữu hạn (NaN and infinity are not numbers)."}
    task_id(code, "receive", actor)  # still open: nothing was written


@pytest.mark.parametrize("value", [
    "Nguy\ud800n",  # a lone surrogate, as a JSON body's "\ud800" gives: orjson refuses it
    json.loads("[" * 300 + "]" * 300),  # deeper than orjson nests
    -(2**64),  # below orjson's range
    2**64 - 1,  # within it
])
def test_what_orjson_cannot_write_is_written_by_the_standard_library_and_reads_back_exactly(value):
    state = {"data": {"field": value}, "tasks": {}}
    assert runtime.state_dict(runtime.state_text(state)) == state
