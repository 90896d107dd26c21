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

import re
import threading

from lxml import etree

from .forms import form_problems
from .scripting import ScriptError, compile_expression, compile_script

MAX_BPMN_BYTES = 2 * 1024 * 1024
ROLES = ("reception", "head", "official", "supervisor", "designer", "admin")
REQUIRED_PERIODS = ("acknowledge_working_days", "explain_days", "extension_max_days", "extensions_allowed")

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
BPMN = "{%s}" % NS["bpmn"]
# Activities the engine has no behaviour for: a step is a user task (a person, a form, a role) or a script.
UNSUPPORTED_TASKS = ("task", "manualTask", "serviceTask", "sendTask", "receiveTask", "businessRuleTask")
_STEP_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_FORM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,100}\.json$")
_SAFE_ID = re.compile(r"^[A-Za-z_][\w.\-]*$")


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


def _role_of_lane(lane) -> str | None:
    """A lane maps to a role by a ``role`` property, or by its id ``Lane_<role>``."""
    role = _properties(lane).get("role")
    if role:
        return role if role in ROLES else None
    lane_id = lane.get("id") or ""
    name = lane_id.split("_", 1)[1] if "_" in lane_id else lane_id
    return name if name in ROLES else None


_XSD_LOCK = threading.Lock()
MAX_REPORTED = 50


def _xsd_problems(root) -> list[Problem]:
    """Every BPMN XSD error (at most MAX_REPORTED), each with its line."""
    from SpiffWorkflow.spiff.parser.process import VALIDATOR  # XSD, compiled once by SpiffWorkflow

    with _XSD_LOCK:  # one compiled schema, one error log: not shared between threads at once
        VALIDATOR.preprocess(root)
        try:
            if VALIDATOR.validator.validate(root.getroottree()):
                return []
        except etree.XMLSchemaValidateError:  # libxml2 gives up (an unexpanded entity reference, say)
            return [Problem("BPMN schema: the document cannot be checked against the BPMN schema "
                            "(entity references are not allowed)", root.sourceline, root.get("id"))]
        errors = list(VALIDATOR.validator.error_log)
    problems = []
    for error in errors[:MAX_REPORTED]:
        problems.append(Problem(f"BPMN schema: {error.message}", error.line or None, _element_at(root, error.line)))
    if len(errors) > MAX_REPORTED:
        problems.append(Problem(f"... and {len(errors) - MAX_REPORTED} more schema errors"))
    return problems


def _element_at(root, line: int | None) -> str | None:
    """The id of the element that starts on ``line`` (or the nearest one above it)."""
    if not line:
        return None
    best = None
    for element in root.iter():
        if not isinstance(element.tag, str) or element.sourceline is None:
            continue
        if element.sourceline > line:
            break
        if element.get("id"):
            best = element.get("id")
    return best


def _unreachable_timers(process) -> list[Problem]:
    """Timers no path from a start event reaches would never arm: a deadline that cannot fire."""
    edges: dict[str, list[str]] = {}
    for flow in process.iter(BPMN + "sequenceFlow"):
        edges.setdefault(flow.get("sourceRef"), []).append(flow.get("targetRef"))
    attached: dict[str, list[str]] = {}
    for boundary in process.iter(BPMN + "boundaryEvent"):
        attached.setdefault(boundary.get("attachedToRef"), []).append(boundary.get("id"))
    # The process's own start events, and those of event subprocesses (started by their event, not a flow).
    starts = [e.get("id") for e in process.findall("bpmn:startEvent", NS)]
    for sub in process.iter(BPMN + "subProcess"):
        if sub.get("triggeredByEvent") == "true":
            starts.extend(e.get("id") for e in sub.findall("bpmn:startEvent", NS))
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(edges.get(node, []))
        todo.extend(attached.get(node, []))
        element = process.find(f".//*[@id='{node}']") if node and _SAFE_ID.match(node) else None
        if element is not None and etree.QName(element).localname in ("subProcess", "transaction", "adHocSubProcess"):
            todo.extend(e.get("id") for e in element.findall("bpmn:startEvent", NS))
    problems = []
    for definition in process.iter(BPMN + "timerEventDefinition"):
        event = definition.getparent()
        if event.get("id") not in seen and etree.QName(event).localname != "startEvent":
            problems.append(Problem(f"timer '{event.get('id')}' cannot be reached from the start event: "
                                    "its deadline would never arm", event.sourceline, event.get("id")))
    return problems


_DRAWN_TAGS = {"task", "userTask", "scriptTask", "manualTask", "serviceTask", "sendTask", "receiveTask",
               "businessRuleTask", "callActivity", "subProcess", "startEvent", "endEvent",
               "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "exclusiveGateway",
               "parallelGateway", "inclusiveGateway", "eventBasedGateway", "sequenceFlow"}


def _undrawn(root, process) -> list[str]:
    """Elements with no shape in the diagram (BPMNDI): they run, but no one can see them on the
    case's diagram or the heatmap, so say so (a file written by hand or by a script often lacks them)."""
    drawn = {e.get("bpmnElement") for e in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape",
                                                     "{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge")}
    if not drawn:
        return ["the file has no diagram (BPMNDI): cases will be listed but not drawn"]
    return [f"'{e.get('id')}' (line {e.sourceline}) has no shape in the diagram (BPMNDI) and will not be drawn"
            for e in process.iter() if isinstance(e.tag, str) and etree.QName(e).localname in _DRAWN_TAGS
            and e.get("id") and e.get("id") not in drawn]


def parse_definition(xml: bytes, forms: dict[str, dict] | None = None, forms_dir: Path | None = None,
                     fallback_forms: dict[str, dict] | None = None) -> Parsed:
    """Validate a BPMN document and build its manifest, or raise InvalidDefinition.

    A form a user task names is looked up in ``forms``, then ``forms_dir``, then ``fallback_forms``.
    """
    if len(xml) > MAX_BPMN_BYTES:
        raise InvalidDefinition([Problem(f"file too large: {len(xml)} bytes (limit {MAX_BPMN_BYTES})")])
    try:
        xml.decode("utf-8")  # stored and shown as text: other encodings are refused, not guessed
    except UnicodeDecodeError as exc:
        line = xml[:exc.start].count(b"\n") + 1
        raise InvalidDefinition([Problem(f"the file must be UTF-8 encoded (byte {exc.start} is not UTF-8); "
                                         "save it as UTF-8 and upload it again", line)]) from None
    try:
        root = etree.fromstring(xml, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidDefinition([Problem(f"not well-formed XML: {exc.msg}", exc.lineno)]) from None
    if root.tag != BPMN + "definitions":
        raise InvalidDefinition([Problem("the root element must be bpmn:definitions", root.sourceline)])

    schema_problems = _xsd_problems(root)
    if schema_problems:
        raise InvalidDefinition(schema_problems)

    all_processes = root.findall("bpmn:process", NS)
    processes = [p for p in all_processes if p.get("isExecutable", "false") == "true"]
    if len(processes) != 1:
        found = [Problem(f"process '{p.get('id')}' is not executable (isExecutable=\"{p.get('isExecutable', 'false')}\"); "
                         "mark the one process GiảiTrình should run isExecutable=\"true\"", p.sourceline, p.get("id"))
                 for p in all_processes if p not in processes] if not processes else \
                [Problem(f"process '{p.get('id')}' is one of {len(processes)} executable processes; "
                         "a definition holds exactly one", p.sourceline, p.get("id")) for p in processes]
        raise InvalidDefinition([Problem(f"expected exactly one executable process, found {len(processes)}",
                                         root.sourceline, root.get("id"))] + found)
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

    lanes = {}  # flow node id -> the role of its (innermost) lane
    for lane in process.iter(BPMN + "lane"):
        role = _role_of_lane(lane)
        for ref in lane.findall("bpmn:flowNodeRef", NS):
            lanes[(ref.text or "").strip()] = role

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
            role = lanes.get(element_id)
            if role is None:
                problems.append(Problem(
                    f"user task '{element_id}' must be in a lane that maps to a role (lane id Lane_<role> or "
                    f"property 'role'; one of {', '.join(ROLES)})", element.sourceline, element_id))
            if not _STEP_KEY.match(element_id or ""):
                problems.append(Problem(f"user task id '{element_id}' is its step key: use letters, "
                                        "digits and '_' (e.g. legal_review)", element.sourceline, element_id))
            form_name = props.get("formJsonSchemaFilename")
            schema = None
            if not form_name:
                problems.append(Problem(f"user task '{element_id}' has no form (formJsonSchemaFilename)", element.sourceline, element_id))
            elif not _FORM_NAME.match(form_name):
                problems.append(Problem(f"form name '{form_name[:80]}' must be a file name like legal_review.json "
                                        "(letters, digits, '_', '-')", element.sourceline, element_id))
                form_name = None
            else:
                schema = forms.get(form_name)
                if schema is None and forms_dir is not None and (forms_dir / form_name).is_file():
                    try:
                        schema = json.loads((forms_dir / form_name).read_text(encoding="utf-8"))
                    except json.JSONDecodeError as exc:
                        problems.append(Problem(f"form {form_name}: invalid JSON at line {exc.lineno}: {exc.msg}", element.sourceline, element_id))
                if schema is None and fallback_forms:
                    schema = fallback_forms.get(form_name)
                if schema is None:
                    problems.append(Problem(f"form '{form_name}' not found (write it in the forms editor)",
                                            element.sourceline, element_id))
                else:
                    form_errors = form_problems(schema)
                    for message in form_errors:
                        problems.append(Problem(f"form {form_name}: {message}", element.sourceline, element_id))
                    forms[form_name] = schema if not form_errors else None
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
        elif tag in UNSUPPORTED_TASKS:
            problems.append(Problem(
                f"'{element_id}' is a {tag}, which GiảiTrình does not run: make it a user task (a step with a form "
                "and a role) or a script task", element.sourceline, element_id))
        elif tag == "timerEventDefinition":
            if not any(etree.QName(c).localname in ("timeDate", "timeDuration", "timeCycle")
                       for c in element if isinstance(c.tag, str)):
                event = element.getparent()
                problems.append(Problem(f"timer '{event.get('id')}' has no timeDate, timeDuration or timeCycle expression",
                                        element.sourceline, event.get("id")))
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

    problems.extend(_unreachable_timers(process))
    warnings.extend(_undrawn(root, process))

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
