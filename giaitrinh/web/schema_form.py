"""A task's JSON Schema as HTML form fields, and the posted form back as JSON.

The engine validates the result against the same schema, so this module only has to turn
strings into the types the schema names; it never decides what is valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from flask_babel import gettext as _


@dataclass
class Field:
    name: str  # dotted path, the same path the engine uses for field errors
    title: str
    widget: str  # text, textarea, select, radio, checkbox, yesno, integer, date, group
    required: bool = False
    description: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    value: Any = None
    error: str | None = None
    show_if: tuple[str, str] | None = None  # (field name, value): shown only then
    children: list["Field"] = field(default_factory=list)
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None

    @property
    def html_id(self) -> str:
        return "f-" + self.name.replace(".", "-")

    @property
    def checked(self) -> bool:
        return self.value is True


def _options(prop: Mapping) -> list[tuple[str, str]]:
    if "oneOf" in prop:
        return [(str(o["const"]), str(o.get("title", o["const"]))) for o in prop["oneOf"] if "const" in o]
    if "enum" in prop:
        return [(str(v), str(v)) for v in prop["enum"]]
    return []


def _widget(prop: Mapping, required: bool) -> str:
    kind = prop.get("type")
    if kind == "object":
        return "group"
    if kind == "boolean":
        # A required yes/no must be chosen on purpose; an optional one is a plain tick box.
        return "yesno" if required else "checkbox"
    if kind == "integer":
        return "integer"
    if _options(prop):
        return "radio" if len(_options(prop)) <= 4 else "select"
    if prop.get("format") == "date":
        return "date"
    return "textarea" if prop.get("x-widget") == "textarea" else "text"


def _lookup(values: Mapping | None, path: str) -> Any:
    current: Any = values or {}
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def build(schema: Mapping, values: Mapping | None = None, errors: Mapping[str, str] | None = None,
          prefix: str = "") -> list[Field]:
    """The fields of ``schema`` filled with ``values`` and the engine's ``errors`` per path."""
    errors = errors or {}
    required = set(schema.get("required", []))
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        path = prefix + name
        widget = _widget(prop, name in required)
        show_if = prop.get("x-show-if")
        item = Field(
            name=path, title=str(prop.get("title") or name), widget=widget, required=name in required,
            description=str(prop.get("description") or ""), options=_options(prop), value=_lookup(values, path),
            error=errors.get(path),
            show_if=next(iter(show_if.items())) if isinstance(show_if, Mapping) and show_if else None,
            minimum=prop.get("minimum"), maximum=prop.get("maximum"), max_length=prop.get("maxLength"),
        )
        if widget == "group":
            item.children = build(prop, values, errors, prefix=path + ".")
        out.append(item)
    return out


def parse(schema: Mapping, form: Mapping[str, str], prefix: str = "") -> tuple[dict, dict[str, str]]:
    """(data, errors): typed values for the schema's fields; unknown posted names are ignored."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        path = prefix + name
        kind = prop.get("type")
        if kind == "object":
            sub, sub_errors = parse(prop, form, prefix=path + ".")
            errors.update(sub_errors)
            if sub or name in required:  # an optional section left empty was not proposed
                data[name] = sub
            continue
        raw = form.get(path)
        if kind == "boolean":
            if raw in ("true", "on", "1"):
                data[name] = True
            elif raw in ("false", "0") or (raw is None and name not in required):
                data[name] = False
            continue
        if raw is None or not raw.strip():
            continue
        if kind == "integer":
            try:
                data[name] = int(raw.strip())
            except ValueError:
                errors[path] = _("Phải là số nguyên.")
            continue
        data[name] = raw.strip() if prop.get("x-widget") != "textarea" else raw.replace("\r\n", "\n").strip()
    return data, errors
