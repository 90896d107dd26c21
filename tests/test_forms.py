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
    kept = next(iter(forms._validators.values()))[0]
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


def _variants(schema: dict) -> list:
    """Data for a form, fitting and not: each property's value and the values at its edges, one
    property and every property at a time, the required ones left out, a field not in the form."""
    import itertools

    def values_of(prop: dict) -> list:
        found = [None, True, False, 0, 1, 1.0, 1.5, -1, 2**70, "", "x", "ă" * 3, [], {}, {"a": 1}]
        for option in prop.get("oneOf", []) + prop.get("anyOf", []):
            if "const" in option:
                found.append(option["const"])
        found += prop.get("enum", [])
        if "const" in prop:
            found.append(prop["const"])
        for bound in ("minLength", "maxLength"):
            if bound in prop:
                found += ["đ" * (prop[bound] + delta) for delta in (-1, 0, 1) if prop[bound] + delta >= 0]
        for bound in ("minimum", "maximum"):
            if bound in prop:
                found += [prop[bound] + delta for delta in (-1, 0, 1, 0.5)]
        if prop.get("type") == "object":
            inner = prop.get("properties", {})
            found += [{name: value} for name, sub in inner.items() for value in values_of(sub)[-6:]]
            found.append({name: values_of(sub)[-1] for name, sub in inner.items()})
        return found

    properties = schema.get("properties", {})
    choices = {name: values_of(prop) for name, prop in properties.items()}
    data = [{}, {"not_in_the_form": 1}]
    for name, values in choices.items():
        data += [{name: value} for value in values]
    names = list(choices)
    for first, second in itertools.combinations(names, 2):
        data += [{first: a, second: b} for a in choices[first][-5:] for b in choices[second][-5:]]
    data += [dict(zip(names, combo)) for combo in itertools.islice(itertools.product(*(v[-4:] for v in choices.values())), 400)]
    return data


def test_jsonschema_rs_says_fits_exactly_when_jsonschema_finds_no_error_on_the_forms_shipped():
    import json
    from pathlib import Path

    from jsonschema import Draft202012Validator

    from giaitrinh.config import PROCESSES_DIR

    fast = 0
    for path in sorted(Path(PROCESSES_DIR, "forms").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        forms._validators.clear()
        _validator, fits = forms._validators_for(schema)
        assert (fits is not None) == ("format" not in path.read_text()), path.name  # dialogue has a date
        if fits is None:
            continue
        fast += 1
        reference = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        variants = _variants(schema)
        assert len(variants) > 50
        for data in variants:
            assert fits(data) == (not list(reference.iter_errors(data))), (path.name, data)
    assert fast >= 5


def test_the_values_at_the_edges_are_judged_alike_and_a_form_with_other_keywords_goes_to_jsonschema():
    from jsonschema import Draft202012Validator

    cases = [
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": -3, "maximum": 10}}},
         [{"n": v} for v in (2**70, -2**70, 2**63, 10.0, 10, 11, -3, -4, -3.5, True, 1.5, "1", None)]),
        ({"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3}}},
         [{"s": v} for v in ("ab", "abcd", "ăâê", "e\u0301e\u0301", "\ud800a", "a", "")]),
        ({"type": "object", "properties": {"c": {"const": 1}, "e": {"enum": [False, 0, "x", {"a": [1]}]}}},
         [{"c": 1.0}, {"c": True}, {"e": 0.0}, {"e": False}, {"e": {"a": [1.0]}}, {"e": {"a": [True]}}, {"e": None}]),
        ({"type": "object", "required": ["a"], "additionalProperties": False,
          "properties": {"a": {"type": ["boolean", "null"]}}, "minProperties": 1, "maxProperties": 1},
         [{"a": True}, {"a": None}, {"a": 0}, {}, {"a": True, "b": 1}]),
        ({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                                  "maxItems": 2}}},
         [{"l": []}, {"l": ["a"]}, {"l": ["a", 1]}, {"l": ["a", "b", "c"]}, {"l": "ab"}]),
        ({"type": "object", "properties": {"n": {"exclusiveMinimum": 0, "exclusiveMaximum": 1}},
          "not": {"required": ["forbidden"]}},
         [{"n": 0}, {"n": 0.5}, {"n": 1}, {"n": "0"}, {"forbidden": 1}]),
    ]
    for schema, datas in cases:
        forms._validators.clear()
        _validator, fits = forms._validators_for(schema)
        assert fits is not None
        reference = Draft202012Validator(schema)
        for data in datas:
            assert fits(data) == (not list(reference.iter_errors(data))), (schema, data)
    for other in ({"type": "string", "pattern": "^a$"}, {"type": "string", "format": "date"},
                  {"type": "number", "multipleOf": 0.1}, {"type": "array", "uniqueItems": True},
                  {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}}, {"propertyNames": {"maxLength": 2}},
                  {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}):
        forms._validators.clear()
        schema = {"type": "object", "properties": {"v": other}}
        assert forms._validators_for(schema)[1] is None, other
    # jsonschema's verdict stands where the two differ: Python's $ matches before a final newline.
    assert forms.validate({"type": "object", "properties": {"v": {"type": "string", "pattern": "^a$"}}},
                          {"v": "a\n"}) == {}
