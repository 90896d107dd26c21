"""JSON columns' text (engine/db.py json_text, json_value): orjson's, with the standard library's
refusals and its fallbacks."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from giaitrinh.engine import db
from giaitrinh.engine.models import Task

from .helpers import do, submit


def test_what_is_written_reads_back_as_the_standard_library_reads_it():
    value = {"explanation": {"content": "Ông Nguyễn Văn An đã được thông báo"}, "n": [1, 2.5, None, True], 3: "ba"}
    text = db.json_text(value)
    assert "Nguyễn" in text  # UTF-8, not \\u escapes
    assert json.loads(text) == db.json_value(text) == json.loads(json.dumps(value))


def test_what_the_standard_library_refuses_is_refused_and_what_orjson_cannot_do_it_does():
    @dataclass
    class Point:
        x: int

    for refused in ({"at": datetime.now(timezone.utc)}, {"p": Point(1)}, {"s": {1, 2}}):
        with pytest.raises(TypeError):
            db.json_text(refused)
    assert json.loads(db.json_text({"big": 2**70})) == {"big": 2**70}
    assert math.isnan(db.json_value('{"x": NaN}')["x"])  # as an older row may hold it


def test_a_completed_form_is_stored_and_read_back(world, people):
    code = submit()["code"]
    do(code, "receive", people["tiepnhan"], {"decision": "accept", "note": "Đủ điều kiện"})
    with db.read_only() as session:
        task = session.execute(select(Task).where(Task.step == "receive")).scalar_one()
        assert task.data["note"] == "Đủ điều kiện" and task.data["decision"] == "accept"
        if db.is_sqlite():
            raw = session.connection().exec_driver_sql("SELECT data FROM tasks WHERE id = ?", (task.id,)).scalar_one()
            assert json.loads(raw) == task.data and "Đủ điều kiện" in raw
