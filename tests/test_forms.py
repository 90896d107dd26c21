"""Task forms' dynamic options (engine/forms.py)."""
from __future__ import annotations

import copy

from giaitrinh.engine import forms

_ASSIGN = {
    "type": "object",
    "required": ["assignee"],
    "properties": {
        "assignee": {"type": "string", "title": "Cán bộ", "x-source": "unit_officials"},
        "note": {"type": "string", "title": "Ghi chú"},
    },
}


def test_the_options_are_filled_in_a_new_schema_and_the_deployed_one_is_left_as_it_was():
    before = copy.deepcopy(_ASSIGN)
    filled = forms.with_options(_ASSIGN, {"unit_officials": lambda: [("chuyenvien", "Lê Văn Chuyên")]})
    assert filled["properties"]["assignee"]["oneOf"] == [{"const": "chuyenvien", "title": "Lê Văn Chuyên"}]
    assert filled["properties"]["assignee"]["x-source"] == "unit_officials"
    assert filled["properties"]["note"] == _ASSIGN["properties"]["note"]
    assert _ASSIGN == before
    assert forms.validate(filled, {"assignee": "someone_else"})  # not one of the options
    assert forms.validate(filled, {"assignee": "chuyenvien"}) == {}


def test_no_official_to_choose_and_no_source_known():
    nobody = forms.with_options(_ASSIGN, {"unit_officials": lambda: []})
    assert nobody["properties"]["assignee"]["oneOf"] == [{"const": "", "title": "—"}]
    unknown = forms.with_options(_ASSIGN, {})
    assert unknown == _ASSIGN and unknown is not _ASSIGN and unknown["properties"] is not _ASSIGN["properties"]
    assert forms.with_options({"type": "object"}, {}) == {"type": "object"}
