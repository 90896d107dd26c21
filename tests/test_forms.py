"""Task forms: dynamic options and validation (engine/forms.py)."""
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


def test_a_form_of_the_same_content_is_checked_by_the_validator_built_for_it_once():
    forms._validators.clear()
    first = forms.with_options(_ASSIGN, {"unit_officials": lambda: [("chuyenvien", "Lê Văn Chuyên")]})
    again = forms.with_options(_ASSIGN, {"unit_officials": lambda: [("chuyenvien", "Lê Văn Chuyên")]})
    assert first is not again
    assert forms.validate(first, {"assignee": "chuyenvien"}) == {}
    assert forms.validate(again, {"assignee": "ai_do"}) == {"assignee": forms.validate(first, {"assignee": "ai_do"})["assignee"]}
    assert len(forms._validators) == 1
    kept = next(iter(forms._validators.values()))
    assert kept.schema == first and kept.schema is not first  # its own copy


def test_a_form_changed_after_it_was_checked_is_checked_as_it_is_now():
    forms._validators.clear()
    schema = {"type": "object", "required": ["note"], "properties": {"note": {"type": "string", "maxLength": 5}}}
    assert forms.validate(schema, {"note": "dài quá"}) != {}
    schema["properties"]["note"]["maxLength"] = 50
    assert forms.validate(schema, {"note": "dài quá"}) == {}
    schema["required"].append("when")
    assert "when" in forms.validate(schema, {"note": "ngắn"})


def test_a_form_its_json_text_does_not_give_back_is_checked_as_it_is_and_never_kept():
    forms._validators.clear()
    not_a_number = {"type": "object", "properties": {"n": {"type": "number", "maximum": float("nan")}}}
    assert forms.validate(not_a_number, {"n": 1}) == {}  # orjson's copy would say maximum: null, an error
    keyed_by_number = {"type": "object", "properties": {"n": {"type": "integer"}}, 1: "not JSON"}
    assert forms.validate(keyed_by_number, {"n": "x"}) != {}
    assert forms._validators == {}
