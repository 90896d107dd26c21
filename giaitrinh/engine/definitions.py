"""Parse, validate and describe a BPMN definition before anything can run it.

Validation happens on upload, not at 2 a.m. when a timer arms: well-formed XML
(entities and network off, size limit), the BPMN XSD, SpiffWorkflow's parser,
every expression compiled by the restricted compiler, and the product's own lint
rules. Each problem names its line and element id.

The *manifest* is what the engine needs to know about a definition without
touching SpiffWorkflow at run time: steps, roles, forms, statuses, rules, and the
statutory periods, which are data of the process version and never constants in
code (a change of law is a new process version).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from lxml import etree

from .scripting import ScriptError, compile_expression, compile_script

MAX_BPMN_BYTES = 2 * 1024 * 1024
ROLES = ("reception", "head", "official", "supervisor", "designer", "admin")
REQUIRED_PERIODS = ("acknowledge_working_days", "explain_days", "extension_max_days", "extensions_allowed")

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
BPMN = "{%s}" % NS["bpmn"]


@dataclass
class Problem:
    message: str
    line: int | None = None
    element_id: str | None = None

    def as_dict(self) -> dict:
        out = {"message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.element_id is not None:
            out["element_id"] = self.element_id
        return out


class InvalidDefinition(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        first = problems[0]
        where = f" (line {first.line})" if first.line else ""
        super().__init__(f"{first.message}{where}" + (f" and {len(problems) - 1} more" if len(problems) > 1 else ""))


@dataclass
class Parsed:
    key: str
    name: str
    manifest: dict
    sha256: str
    warnings: list[str] = field(default_factory=list)


def safe_xml_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=False)


def _properties(element) -> dict[str, str]:
    props = {}
    for prop in element.findall("bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS):
        props[prop.get("name")] = prop.get("value", "")
    return props


def _role_of_lane(lane_id: str | None) -> str | None:
    if not lane_id:
        return None
    name = lane_id.split("_", 1)[1] if "_" in lane_id else lane_id
    return name if name in ROLES else None


def parse_definition(xml: bytes, forms: dict[str, dict] | None = None, forms_dir: Path | None = None) -> Parsed:
    """Validate a BPMN document and build its manifest, or raise InvalidDefinition."""
    if len(xml) > MAX_BPMN_BYTES:
        raise InvalidDefinition([Problem(f"file too large: {len(xml)} bytes (limit {MAX_BPMN_BYTES})")])
    try:
        root = etree.fromstring(xml, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidDefinition([Problem(f"not well-formed XML: {exc.msg}", exc.lineno)]) from None
    if root.tag != BPMN + "definitions":
        raise InvalidDefinition([Problem("the root element must be bpmn:definitions", root.sourceline)])

    from SpiffWorkflow.spiff.parser.process import VALIDATOR  # XSD, compiled once by SpiffWorkflow

    try:
        VALIDATOR.validate(root.getroottree(), root.base)
    except Exception as exc:  # SpiffWorkflow raises ValidationException with line info
        line = getattr(exc, "line_number", None) or getattr(exc, "sourceline", None)
        raise InvalidDefinition([Problem(f"BPMN schema: {exc}", line)]) from None

    processes = [p for p in root.findall("bpmn:process", NS) if p.get("isExecutable", "false") == "true"]
    if len(processes) != 1:
        raise InvalidDefinition([Problem(f"expected exactly one executable process, found {len(processes)}")])
    process = processes[0]
    key = process.get("id")
    problems: list[Problem] = []
    warnings: list[str] = []

    # Statutory periods: data of this version of the process.
    periods = {}
    for name, value in _properties(process).items():
        if name.startswith("period."):
            try:
                periods[name[len("period."):]] = int(value)
            except ValueError:
                problems.append(Problem(f"period {name} must be a whole number, not {value!r}", process.sourceline, key))
    for name in REQUIRED_PERIODS:
        if name not in periods:
            problems.append(Problem(f"missing statutory period property 'period.{name}' on the process", process.sourceline, key))

    lanes = {}
    for lane in process.iter(BPMN + "lane"):
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            lanes[(ref.text or "").strip()] = lane.get("id")

    tasks: dict[str, dict] = {}
    statuses: dict[str, str] = {}
    timers: dict[str, dict] = {}
    forms = dict(forms or {})

    for element in process.iter():
        if not isinstance(element.tag, str):
            continue
        tag = etree.QName(element).localname
        element_id = element.get("id")
        props = _properties(element) if element_id else {}
        if "status" in props:
            statuses[element_id] = props["status"]
        if tag == "userTask":
            role = _role_of_lane(lanes.get(element_id))
            if role is None:
                problems.append(Problem(
                    f"user task '{element_id}' must be in a lane whose id names a role (Lane_<role>, one of {', '.join(ROLES)})",
                    element.sourceline, element_id))
            form_name = props.get("formJsonSchemaFilename")
            schema = None
            if not form_name:
                problems.append(Problem(f"user task '{element_id}' has no form (formJsonSchemaFilename)", element.sourceline, element_id))
            else:
                schema = forms.get(form_name)
                if schema is None and forms_dir is not None and (forms_dir / form_name).is_file():
                    try:
                        schema = json.loads((forms_dir / form_name).read_text(encoding="utf-8"))
                    except json.JSONDecodeError as exc:
                        problems.append(Problem(f"form {form_name}: invalid JSON at line {exc.lineno}: {exc.msg}", element.sourceline, element_id))
                if schema is None:
                    problems.append(Problem(f"form file '{form_name}' not found", element.sourceline, element_id))
                else:
                    try:
                        Draft202012Validator.check_schema(schema)
                    except SchemaError as exc:
                        problems.append(Problem(f"form {form_name} is not a valid JSON Schema: {exc.message}", element.sourceline, element_id))
                        schema = None
                    forms[form_name] = schema
            rules = []
            for name, value in props.items():
                if name.startswith("rule:") and not name.endswith(":message"):
                    field_path = name[len("rule:"):]
                    try:
                        compile_expression(value)
                    except ScriptError as exc:
                        problems.append(Problem(f"rule for {field_path}: {exc.message}", element.sourceline, element_id))
                    rules.append({"field": field_path, "expr": value,
                                  "message": props.get(f"{name}:message", f"{field_path}: invalid")})
            if "assignee" in props:
                try:
                    compile_expression(props["assignee"])
                except ScriptError as exc:
                    problems.append(Problem(f"assignee expression: {exc.message}", element.sourceline, element_id))
            instructions = element.find("bpmn:extensionElements/spiffworkflow:instructionsForEndUser", NS)
            tasks[element_id] = {
                "step": element_id,
                "title": element.get("name") or element_id,
                "role": role,
                "form": form_name,
                "status": props.get("status"),
                "assignee_expr": props.get("assignee"),
                "rules": rules,
                "instructions": (instructions.text or "").strip() if instructions is not None else "",
                "escalates": bool(props.get("escalates", "")),
            }
        elif tag == "scriptTask":
            script = element.find("bpmn:script", NS)
            if script is None or not (script.text or "").strip():
                problems.append(Problem(f"script task '{element_id}' has no script", element.sourceline, element_id))
            else:
                try:
                    compile_script(script.text)
                except ScriptError as exc:
                    line = script.sourceline + (exc.line - 1 if exc.line else 0)
                    problems.append(Problem(f"script of '{element_id}': {exc.message}", line, element_id))
        elif tag == "conditionExpression":
            parent_id = element.getparent().get("id")
            try:
                compile_expression((element.text or "").strip())
            except ScriptError as exc:
                problems.append(Problem(f"condition of '{parent_id}': {exc.message}", element.sourceline, parent_id))
        elif tag in ("timeDate", "timeDuration", "timeCycle"):
            timer_event = element.getparent().getparent()
            try:
                compile_expression((element.text or "").strip())
            except ScriptError as exc:
                problems.append(Problem(f"timer expression of '{timer_event.get('id')}': {exc.message}", element.sourceline, timer_event.get("id")))
            if tag != "timeDate":
                warnings.append(f"timer '{timer_event.get('id')}' uses {tag}: calendar time, not working days; statutory deadlines should use timeDate")
            if etree.QName(timer_event).localname == "boundaryEvent":
                timers[timer_event.get("id")] = {
                    "attached_to": timer_event.get("attachedToRef"),
                    "interrupting": timer_event.get("cancelActivity", "true") != "false",
                }

    for timer_id, timer in timers.items():
        if timer["attached_to"] in tasks:
            tasks[timer["attached_to"]]["escalates"] = True
    escalation_tasks = [t for t in tasks if t == "escalate" or t.startswith("escalate")]
    escalation_role = tasks[escalation_tasks[0]]["role"] if escalation_tasks else "head"

    if problems:
        raise InvalidDefinition(problems)

    # Finally SpiffWorkflow itself must be able to build a runnable spec.
    from .runtime import parse_spec

    try:
        parse_spec(xml, key)
    except Exception as exc:  # SpiffWorkflow's ValidationException and friends
        line = getattr(exc, "line_number", None)
        raise InvalidDefinition([Problem(f"process cannot be built: {exc}", line or None, getattr(exc, "id", None))]) from None

    used_forms = {t["form"]: forms[t["form"]] for t in tasks.values() if t["form"] in forms}
    manifest = {
        "process_id": key,
        "name": process.get("name") or key,
        "periods": periods,
        "tasks": tasks,
        "statuses": statuses,
        "timers": timers,
        "forms": used_forms,
        "escalation_role": escalation_role,
    }
    digest = hashlib.sha256(xml + json.dumps(used_forms, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Parsed(key=key, name=manifest["name"], manifest=manifest, sha256=digest, warnings=warnings)
