"""JSON Schema task forms: validation with a message per field, and dynamic options."""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Callable

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


def _path(parts) -> str:
    return ".".join(str(p) for p in parts)


def _message(error: ValidationError) -> tuple[str, str]:
    """(field path, Vietnamese message) for one schema error."""
    path = list(error.absolute_path)
    v = error.validator
    if v == "required":
        missing = [name for name in error.validator_value if not isinstance(error.instance, dict) or name not in error.instance]
        return _path(path + [missing[0] if missing else "?"]), "Trường này là bắt buộc (required)."
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {}))) if isinstance(error.instance, dict) else []
        return _path(path + [extra[0] if extra else "?"]), "Trường không được phép (unknown field)."
    if v == "type":
        names = {"string": "chuỗi", "integer": "số nguyên", "number": "số", "boolean": "đúng/sai", "object": "đối tượng", "array": "danh sách"}
        expected = error.validator_value if isinstance(error.validator_value, str) else error.validator_value[0]
        return _path(path), f"Phải là {names.get(expected, expected)} (expected {expected})."
    if v in ("oneOf", "enum", "const"):
        return _path(path), "Giá trị không nằm trong danh sách cho phép (not an allowed value)."
    if v == "minLength":
        return _path(path), f"Cần ít nhất {error.validator_value} ký tự (too short)."
    if v == "maxLength":
        return _path(path), f"Tối đa {error.validator_value} ký tự (too long)."
    if v == "minimum":
        return _path(path), f"Tối thiểu là {error.validator_value} (too small)."
    if v == "maximum":
        return _path(path), f"Tối đa là {error.validator_value} (too large)."
    if v == "format":
        return _path(path), f"Sai định dạng {error.validator_value} (invalid format)."
    return _path(path), error.message


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize(value: Any) -> Any:
    """Every string in NFC, the form Vietnamese text is searched and redacted in: "Nguyễn" typed
    with combining marks (NFD) and precomposed is then the same text."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def _leaves(value: Any, path: str = ""):
    """(field path, value) of every string, number and other scalar inside a form's data."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}.{i}" if path else str(i))
    else:
        yield path or "data", value


def control_characters(value: Any, path: str = "") -> dict[str, str]:
    """Fields holding a null byte or another control character (tabs and newlines are text)."""
    return {where: "Không được chứa ký tự điều khiển (no control characters such as NUL)."
            for where, leaf in _leaves(value, path) if isinstance(leaf, str) and _CONTROL.search(leaf)}


def non_finite_numbers(value: Any, path: str = "") -> dict[str, str]:
    """Fields holding NaN or an infinity: Python's JSON parser accepts them, JSON has no such
    number, and neither a workflow's stored state nor PostgreSQL's JSON columns can keep one."""
    return {where: "Phải là một số hữu hạn (NaN and infinity are not numbers)."
            for where, leaf in _leaves(value, path) if isinstance(leaf, float) and not math.isfinite(leaf)}


def validate(schema: dict, data: Any) -> dict[str, str]:
    """Field path -> message for every problem; empty when the data fits the form."""
    if not isinstance(data, dict):
        return {"data": "Dữ liệu biểu mẫu phải là một đối tượng JSON (expected an object)."}
    unstorable = {**control_characters(data), **non_finite_numbers(data)}
    if unstorable:
        return unstorable
    validator, fits = _validators_for(schema)
    if fits is not None:
        try:
            if fits(data):
                return {}
        except Exception:  # noqa: BLE001 - data it cannot take (a huge number): jsonschema judges
            pass
    fields: dict[str, str] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path)):
        field, message = _message(error)
        fields.setdefault(field or "data", message)
    return fields


# Validators by the text of the schema they check. Building one (its reference resolver, its table
# of keywords) cost as much as checking a form with it, and a lifecycle checks six forms. Keyed by
# content, not by the dict: the forms a completion checks are new dicts each time (``with_options``)
# with the same content, and a dict changed after it was checked must not meet the old validator.
# Each kept validator checks its own copy of the schema, which nobody else holds; a schema its
# JSON text does not give back equal (a NaN, which orjson writes as null) is checked as it is.
_MAX_VALIDATORS = 256
_validators: dict[bytes, tuple[Draft202012Validator, Callable[[Any], bool] | None]] = {}

# The keywords whose meaning JSON Schema 2020-12 fixes to the letter, which jsonschema-rs and
# jsonschema both pass the official test suite on. A form that uses only these (and annotations:
# titles, defaults, x-widget...) is first asked of jsonschema-rs, which says in 0.2 us whether the
# data fits; jsonschema, 10 to 70 us, then runs only to say what does not. Left out, so such forms
# always go to jsonschema: ``pattern`` (Rust's and Python's regular expressions differ: ``$``, ``\s``),
# ``format`` (asserted by jsonschema's checker), ``multipleOf`` (float arithmetic), ``uniqueItems``
# (equality of 1 and true), references and the rest. tests/test_forms.py compares both on the
# forms shipped and on values at the edges.
_SUBSCHEMAS = frozenset({"not", "if", "then", "else", "additionalProperties", "items"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_VALUES = frozenset({"type", "required", "enum", "const", "minLength", "maxLength", "minimum", "maximum",
                     "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
                     "minProperties", "maxProperties"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "readOnly", "writeOnly",
                          "deprecated"})
_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def _shared_keywords_only(schema) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key in _VALUES or key in _ANNOTATIONS or key.startswith("x-"):
            continue
        if key == "$schema":
            if value != _DRAFT_2020_12:
                return False
        elif key == "properties":
            if not isinstance(value, dict) or not all(_shared_keywords_only(sub) for sub in value.values()):
                return False
        elif key in _SUBSCHEMAS:
            if not _shared_keywords_only(value):
                return False
        elif key in _SUBSCHEMA_LISTS:
            if not isinstance(value, list) or not all(_shared_keywords_only(sub) for sub in value):
                return False
        else:
            return False
    return True


def _jsonschema(schema) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _validators_for(schema) -> tuple[Draft202012Validator, Callable[[Any], bool] | None]:
    """jsonschema's validator of ``schema``, and jsonschema-rs's test of whether data fits it when
    the form uses only the keywords both read alike (else None)."""
    try:
        text = orjson.dumps(schema)
    except (TypeError, orjson.JSONEncodeError):  # not plain JSON: checked as it is, never kept
        return _jsonschema(schema), None
    found = _validators.get(text)
    if found is not None and found[0].schema == schema:
        return found
    copy = orjson.loads(text)
    if copy != schema:
        return _jsonschema(schema), None
    validator = _jsonschema(copy)
    fits = None
    if _shared_keywords_only(copy):
        try:
            fits = jsonschema_rs.Draft202012Validator(copy).is_valid
        except Exception:  # noqa: BLE001 - a schema it refuses: jsonschema alone
            fits = None
    found = (validator, fits)
    if len(_validators) >= _MAX_VALIDATORS:
        _validators.clear()  # schemas made per call (a unit's officials change): built again
    _validators[text] = found
    return found


def with_options(schema: dict, sources: dict[str, Callable[[], list[tuple[str, str]]]]) -> dict:
    """Fill properties marked ``x-source`` with the allowed values (e.g. the unit's officials).

    ``schema`` is left as it is (it is the deployed definition's, shared): the result is a new
    schema, a new ``properties`` and a new dict for each property filled; what it does not change
    it shares with ``schema``, to be read, not changed. Copying the whole form for every
    completion cost more than validating the data against it."""
    if "properties" not in schema:
        return dict(schema)
    properties = dict(schema["properties"])
    for name, prop in schema["properties"].items():
        source = prop.get("x-source") if isinstance(prop, dict) else None
        if source in sources:
            options = sources[source]()
            properties[name] = {**prop, "oneOf": [{"const": value, "title": label} for value, label in options]
                                or [{"const": "", "title": "—"}]}
    return {**schema, "properties": properties}


def field_names(schema: dict) -> list[str]:
    return list(schema.get("properties", {}))


def options(prop: dict) -> list[tuple[str, str]]:
    """(value, label) pairs of a property with a fixed list of values."""
    if "oneOf" in prop:
        return [(o["const"], o.get("title", str(o["const"]))) for o in prop["oneOf"] if "const" in o]
    if "enum" in prop:
        return [(v, str(v)) for v in prop["enum"]]
    return []


# -- the product's rules for a task form (what web/schema_form.py can render) -------------

FIELD_TYPES = ("string", "integer", "number", "boolean", "object")
MAX_FORM_BYTES = 200_000
MAX_FORM_DEPTH = 4


def form_problems(schema: Any) -> list[str]:
    """Why ``schema`` cannot be a task form: JSON Schema's metaschema, then the product's rules.

    Empty when the form is fine. The rules are what the task page renders: an object with
    titled properties of a type it knows, ``required`` naming properties that exist, and
    ``x-show-if`` naming a sibling field and one of its values.
    """
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        return ["Biểu mẫu phải là một đối tượng JSON Schema (a form must be a JSON object)."]
    try:
        import json as _json

        size = len(_json.dumps(schema, ensure_ascii=False))
    except (TypeError, ValueError):
        return ["Biểu mẫu không phải JSON hợp lệ (not JSON)."]
    if size > MAX_FORM_BYTES:
        return [f"Biểu mẫu quá lớn: {size} byte (form too large; limit {MAX_FORM_BYTES})."]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"Không phải JSON Schema hợp lệ{f' tại {where}' if where else ''}: {exc.message} (invalid JSON Schema)"]
    problems: list[str] = []
    _check_object(schema, "", problems, depth=0)
    return problems


def _check_object(schema: dict, path: str, problems: list[str], depth: int) -> None:
    where = path or "biểu mẫu"
    if schema.get("type") != "object":
        problems.append(f"{where}: phải có \"type\": \"object\" (a form and each group is an object).")
        return
    if depth > MAX_FORM_DEPTH:
        problems.append(f"{where}: lồng quá {MAX_FORM_DEPTH} cấp (nested too deep).")
        return
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        problems.append(f"{where}: cần \"properties\" liệt kê các trường (properties required).")
        return
    for name in schema.get("required", []):
        if name not in properties:
            problems.append(f"{where}: trường bắt buộc '{name}' không có trong properties (required names a missing field).")
    for name, prop in properties.items():
        field_path = f"{path}.{name}" if path else name
        if not isinstance(prop, dict):
            problems.append(f"{field_path}: phải là một đối tượng (each field is an object).")
            continue
        if not str(prop.get("title") or "").strip():
            problems.append(f"{field_path}: thiếu nhãn \"title\" để hiển thị cho cán bộ (a field needs a title).")
        kind = prop.get("type")
        if kind not in FIELD_TYPES:
            problems.append(f"{field_path}: kiểu {kind!r} chưa được hỗ trợ; dùng một trong {', '.join(FIELD_TYPES)} "
                            "(unsupported field type).")
            continue
        show_if = prop.get("x-show-if")
        if show_if is not None:
            if not isinstance(show_if, dict) or len(show_if) != 1:
                problems.append(f"{field_path}: x-show-if phải là {{\"trường\": \"giá trị\"}} (one field, one value).")
            else:
                other, value = next(iter(show_if.items()))
                if other not in properties or other == name:
                    problems.append(f"{field_path}: x-show-if nêu trường '{other}' không có trong cùng nhóm "
                                    "(x-show-if names an unknown field).")
                elif options(properties[other]) and str(value) not in {str(v) for v, _ in options(properties[other])}:
                    problems.append(f"{field_path}: x-show-if: '{value}' không phải một lựa chọn của '{other}' "
                                    "(not one of its values).")
        if kind == "object":
            _check_object(prop, field_path, problems, depth + 1)
