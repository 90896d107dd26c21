"""JSON Schema task forms: validation with a message per field, and dynamic options."""
from __future__ import annotations

import re
import unicodedata

from copy import deepcopy
from typing import Any, Callable

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


def control_characters(value: Any, path: str = "") -> dict[str, str]:
    """Fields holding a null byte or another control character (tabs and newlines are text)."""
    found: dict[str, str] = {}
    if isinstance(value, str):
        if _CONTROL.search(value):
            found[path or "data"] = "Không được chứa ký tự điều khiển (no control characters such as NUL)."
    elif isinstance(value, dict):
        for k, v in value.items():
            found.update(control_characters(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.update(control_characters(v, f"{path}.{i}" if path else str(i)))
    return found


def validate(schema: dict, data: Any) -> dict[str, str]:
    """Field path -> message for every problem; empty when the data fits the form."""
    if not isinstance(data, dict):
        return {"data": "Dữ liệu biểu mẫu phải là một đối tượng JSON (expected an object)."}
    controls = control_characters(data)
    if controls:
        return controls
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    fields: dict[str, str] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path)):
        field, message = _message(error)
        fields.setdefault(field or "data", message)
    return fields


def with_options(schema: dict, sources: dict[str, Callable[[], list[tuple[str, str]]]]) -> dict:
    """Fill properties marked ``x-source`` with the allowed values (e.g. the unit's officials)."""
    schema = deepcopy(schema)
    for prop in schema.get("properties", {}).values():
        source = prop.get("x-source") if isinstance(prop, dict) else None
        if source in sources:
            options = sources[source]()
            prop["oneOf"] = [{"const": value, "title": label} for value, label in options] or [{"const": "", "title": "—"}]
    return schema


def field_names(schema: dict) -> list[str]:
    return list(schema.get("properties", {}))


def options(prop: dict) -> list[tuple[str, str]]:
    """(value, label) pairs of a property with a fixed list of values."""
    if "oneOf" in prop:
        return [(o["const"], o.get("title", str(o["const"]))) for o in prop["oneOf"] if "const" in o]
    if "enum" in prop:
        return [(v, str(v)) for v in prop["enum"]]
    return []
