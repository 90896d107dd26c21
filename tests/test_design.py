"""Process designers through the engine: validation with line and element id, versions that carry
their forms, and running requests moved to a new version by an explicit, audited batch."""
from __future__ import annotations

import json

import pytest
from lxml import etree
from sqlalchemy import select

from giaitrinh.config import PROCESSES_DIR
from giaitrinh.engine import db
from giaitrinh.engine.definitions import InvalidDefinition, parse_definition
from giaitrinh.engine.errors import Conflict, Forbidden, ValidationFailed
from giaitrinh.engine.models import AuditEvent, Request, Task, WorkflowState
from giaitrinh.engine.services import definitions, requests, tasks

from .helpers import EXPLANATION, do, submit, to_explain

LIFECYCLE = (PROCESSES_DIR / "giai_trinh.bpmn").read_bytes()
FORMS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (PROCESSES_DIR / "forms").glob("*.json")}
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}
B = "{%s}" % NS["bpmn"]
S = "{%s}" % NS["spiffworkflow"]
DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
WP = "{http://www.omg.org/spec/DD/20100524/DI}"
REVIEW_FORM = {"type": "object", "title": "Thẩm định pháp lý",
               "properties": {"opinion": {"title": "Ý kiến pháp chế", "type": "string", "x-widget": "textarea"}},
               "required": ["opinion"], "additionalProperties": False}


def _doc(xml: bytes = LIFECYCLE):
    return etree.fromstring(xml)


def _process(root):
    return root.find("bpmn:process", NS)


def with_legal_review(xml: bytes = LIFECYCLE, lane: str = "Lane_head", form: str | None = "legal_review.json",
                      tag: str = "userTask") -> bytes:
    """The lifecycle with a 'legal_review' step between the official's draft and the head's approval."""
    root = _doc(xml)
    process = _process(root)
    flow = process.find("bpmn:sequenceFlow[@id='Flow_gw_explain_approve']", NS)
    approve = process.find("bpmn:userTask[@id='approve']", NS)
    task = etree.SubElement(process, B + tag, id="legal_review", name="Thẩm định pháp lý")
    if form:
        ext = etree.SubElement(task, B + "extensionElements")
        props = etree.SubElement(ext, S + "properties")
        etree.SubElement(props, S + "property", name="formJsonSchemaFilename", value=form)
    etree.SubElement(task, B + "incoming").text = "Flow_gw_explain_approve"
    etree.SubElement(task, B + "outgoing").text = "Flow_legal_review_approve"
    flow.set("targetRef", "legal_review")
    etree.SubElement(process, B + "sequenceFlow", id="Flow_legal_review_approve", sourceRef="legal_review",
                     targetRef="approve")
    approve.find("bpmn:incoming", NS).text = "Flow_legal_review_approve"
    if lane:
        etree.SubElement(process.find(f".//bpmn:lane[@id='{lane}']", NS), B + "flowNodeRef").text = "legal_review"
    # Drawn too, as a modeler would save it: below the approval, with its outgoing flow.
    plane = root.find(f".//{DI}BPMNPlane")
    bounds = root.find(f".//{DI}BPMNShape[@bpmnElement='approve']/{DC}Bounds")
    x, y = int(float(bounds.get("x"))), int(float(bounds.get("y"))) + 110
    shape = etree.SubElement(plane, DI + "BPMNShape", id="legal_review_di", bpmnElement="legal_review")
    etree.SubElement(shape, DC + "Bounds", x=str(x), y=str(y), width="120", height="80")
    edge = etree.SubElement(plane, DI + "BPMNEdge", id="Flow_legal_review_approve_di",
                            bpmnElement="Flow_legal_review_approve")
    etree.SubElement(edge, WP + "waypoint", x=str(x + 60), y=str(y))
    etree.SubElement(edge, WP + "waypoint", x=str(x + 60), y=str(y - 30))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def problems_of(xml: bytes, forms=None):
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(xml, forms=dict(FORMS, **(forms or {})))
    return [p.as_dict() for p in caught.value.problems]


def test_the_shipped_lifecycle_is_valid_and_carries_its_forms():
    parsed = parse_definition(LIFECYCLE, forms=FORMS)
    assert set(parsed.manifest["forms"]) == {"receive.json", "assign.json", "explain.json", "dialogue.json",
                                            "approve.json", "publish.json", "escalate.json"}
    assert parsed.manifest["periods"]["explain_days"] == 15


def test_each_lint_rule_names_the_line_and_the_element():
    # A plain task (what the palette draws first) is not a step the engine can run.
    found = problems_of(with_legal_review(tag="task", form=None))
    assert any(p["element_id"] == "legal_review" and "user task" in p["message"] and p["line"] for p in found)
    # A user task outside any lane with a role, and one without a form.
    found = problems_of(with_legal_review(lane=None, form=None))
    mine = [p for p in found if p.get("element_id") == "legal_review"]
    assert {"lane" in p["message"] for p in mine} == {True, False}
    assert any("no form" in p["message"] for p in mine) and all(p["line"] > 1 for p in mine)
    # A form that is not a form: JSON Schema's metaschema, then the product's own rules.
    found = problems_of(with_legal_review(), {"legal_review.json": {"type": "object", "properties": {
        "opinion": {"type": "strin"}}}})
    assert any(p["element_id"] == "legal_review" and "JSON Schema" in p["message"] for p in found)
    found = problems_of(with_legal_review(), {"legal_review.json": {"type": "object", "properties": {
        "opinion": {"type": "array", "title": "x"}, "b": {"type": "string"}}, "required": ["c"]}})
    messages = " ".join(p["message"] for p in found)
    assert "'array'" in messages and "b: thiếu nhãn" in messages and "'c'" in messages
    # A form name that walks out of the forms folder is refused before any file is opened.
    found = problems_of(with_legal_review(form="../../etc/passwd"))
    assert any("file name" in p["message"] and p["element_id"] == "legal_review" for p in found)
    # Statutory periods must be there.
    found = problems_of(LIFECYCLE.replace(b'name="period.explain_days"', b'name="period.explain_dayz"'))
    assert any(p["element_id"] == "giai_trinh" and "period.explain_days" in p["message"] for p in found)
    # A timer no path reaches never arms; a timer with no expression cannot.
    root = _doc()
    process = _process(root)
    lonely = etree.SubElement(process, B + "intermediateCatchEvent", id="lonely_timer")
    etree.SubElement(etree.SubElement(lonely, B + "timerEventDefinition"), B + "timeDate").text = "deadlines['explain_by']"
    empty = etree.SubElement(process, B + "intermediateCatchEvent", id="empty_timer")
    etree.SubElement(empty, B + "timerEventDefinition")
    found = problems_of(etree.tostring(root))
    assert any(p["element_id"] == "lonely_timer" and "cannot be reached" in p["message"] for p in found)
    assert any(p["element_id"] == "empty_timer" and "no timeDate" in p["message"] for p in found)
    # An expression the restricted compiler refuses.
    found = problems_of(LIFECYCLE.replace(b"decision == 'accept'", b"__import__('os').system('id')"))
    assert any(p["element_id"] == "Flow_gw_receive_accept" and p["line"] for p in found)


def test_every_schema_error_is_reported_with_its_line():
    text = LIFECYCLE.decode()
    broken = text.replace('<bpmn:userTask id="assign" ', '<bpmn:userTask id="assign" colour="red" ', 1) \
                 .replace('<bpmn:userTask id="approve" ', '<bpmn:userTask id="approve" size="big" ', 1)
    found = problems_of(broken.encode())
    assert len(found) == 2 and all(p["message"].startswith("BPMN schema") for p in found)
    lines = text.splitlines()
    assert [p["element_id"] for p in found] == ["assign", "approve"]
    assert [lines[p["line"] - 1].strip().split()[1] for p in found] == ['id="assign"', 'id="approve"']


def test_a_lane_may_name_its_role_by_a_property():
    root = _doc(with_legal_review(lane=None))  # in a lane of its own, whose role is a property
    process = _process(root)
    lane_set = process.find("bpmn:laneSet", NS)
    lane = etree.SubElement(lane_set, B + "lane", id="Lane_legal", name="Pháp chế")
    ext = etree.SubElement(lane, B + "extensionElements")
    etree.SubElement(etree.SubElement(ext, S + "properties"), S + "property", name="role", value="head")
    etree.SubElement(lane, B + "flowNodeRef").text = "legal_review"
    parsed = parse_definition(etree.tostring(root), forms=dict(FORMS, **{"legal_review.json": REVIEW_FORM}))
    assert parsed.manifest["tasks"]["legal_review"]["role"] == "head"


def test_a_version_carries_its_forms_and_the_same_content_is_the_same_version(world, people):
    designer = people["thietke"]
    xml = with_legal_review()
    e = definitions.validate(xml, designer)
    assert not e["valid"] and any("legal_review.json" in p["message"] for p in e["problems"])
    assert definitions.validate(xml, designer, forms={"legal_review.json": REVIEW_FORM})["valid"]
    draft = definitions.upload(xml, designer, forms={"legal_review.json": REVIEW_FORM})
    assert (draft["status"], draft["version"], draft["existing"]) == ("draft", 2, False)
    # Forms the diagram names come from earlier versions when not given: no file is needed.
    again = definitions.upload(xml, designer, forms={"legal_review.json": REVIEW_FORM})
    assert again["id"] == draft["id"] and again["existing"]
    other = definitions.upload(xml, designer, forms={"legal_review.json": dict(REVIEW_FORM, title="Thẩm định")})
    assert other["version"] == 3 and other["sha256"] != draft["sha256"]
    stored = definitions.get_definition(draft["id"], designer)
    assert stored["forms"]["legal_review.json"] == REVIEW_FORM and stored["forms"]["explain.json"] == FORMS["explain.json"]
    assert stored["tasks"]["legal_review"]["role"] == "head"
    assert definitions.bpmn(draft["id"], designer)["bpmn"].encode() == xml
    listed = definitions.list_definitions(designer)["items"]
    assert [(d["version"], d["status"]) for d in listed] == [(3, "draft"), (2, "draft"), (1, "deployed")]
    assert definitions.check_form({"type": "object", "properties": {"a": {"type": "nope"}}}, designer)["valid"] is False
    with pytest.raises(ValidationFailed):
        definitions.upload(xml, designer, forms=["not", "a", "mapping"])
    with pytest.raises(Forbidden):
        definitions.list_definitions(people["tiepnhan"])


def _state(code):
    with db.read_only() as s:
        request = s.execute(select(Request).where(Request.code == code)).scalar_one()
        state = s.get(WorkflowState, request.id)
        open_tasks = sorted(t.step for t in s.execute(
            select(Task).where(Task.request_id == request.id, Task.status == "open")).scalars())
        return request.definition_id, state.definition_id, open_tasks


def test_running_requests_move_to_a_new_version_only_by_an_explicit_migration(world, people):
    designer = people["thietke"]
    v1 = definitions.list_definitions(designer)["items"][0]["id"]
    at_receive = submit()["code"]
    at_explain = submit()["code"]
    to_explain(at_explain, people)
    at_dialogue = submit()["code"]
    to_explain(at_dialogue, people)
    do(at_dialogue, "explain", people["chuyenvien"], {"explanation": EXPLANATION, "needs_dialogue": True})

    # Version 2 adds a legal review before approval and drops the working session (dialogue).
    root = _doc(with_legal_review())
    process = _process(root)
    for element_id in ("dialogue", "dialogue_deadline", "Flow_gw_explain_dialogue", "Flow_dialogue_explain",
                       "Flow_dialogue_deadline_gw_escalate"):
        element = process.find(f".//*[@id='{element_id}']", NS)
        element.getparent().remove(element)
    for ref in process.iter(B + "flowNodeRef", B + "incoming", B + "outgoing"):
        if ref.text in ("dialogue", "dialogue_deadline", "Flow_gw_explain_dialogue", "Flow_dialogue_explain",
                        "Flow_dialogue_deadline_gw_escalate"):
            ref.getparent().remove(ref)
    v2 = definitions.upload(etree.tostring(root), designer, forms={"legal_review.json": REVIEW_FORM})
    with pytest.raises(Conflict):  # a draft is not a target: new requests would not start on it
        definitions.migrate_instances(v1, v2["id"], True, designer)
    definitions.deploy(v2["id"], designer)
    # Deploying changes nothing for running requests.
    assert _state(at_explain) == (v1, v1, ["explain"])

    dry = definitions.migrate_instances(v1, v2["id"], True, designer)
    by_code = {i["code"]: i for i in dry["items"]}
    assert dry["total"] == 3 and dry["ok"] == 2 and dry["migrated"] == 0
    assert by_code[at_receive]["ok"] and by_code[at_explain]["ok"]
    assert by_code[at_explain]["active_steps"] == ["explain"]
    assert not by_code[at_dialogue]["ok"] and any("dialogue" in p for p in by_code[at_dialogue]["problems"])
    assert _state(at_explain) == (v1, v1, ["explain"])  # a dry run changes nothing

    done = definitions.migrate_instances(v1, v2["id"], False, designer)
    assert done["migrated"] == 2
    assert _state(at_explain) == (v2["id"], v2["id"], ["explain"])
    assert _state(at_dialogue) == (v1, v1, ["dialogue"])
    with db.read_only() as s:
        moved = [(e.before["version"], e.after["version"], e.actor) for e in s.execute(
            select(AuditEvent).where(AuditEvent.action == "instance_migrated")).scalars()]
    assert moved == [(1, 2, "thietke"), (1, 2, "thietke")]
    # The migrated request now goes through the new step; the one left behind keeps its own flow.
    do(at_explain, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    assert _state(at_explain)[2] == ["legal_review"]
    do(at_explain, "legal_review", people["lanhdao"], {"opinion": "Đúng thẩm quyền"})
    do(at_explain, "approve", people["lanhdao"], {"approved": True})
    assert requests.view(at_explain, None, people["lanhdao"])["status"] == "explained"
    do(at_dialogue, "dialogue", people["chuyenvien"], {"minutes": "Biên bản làm việc ngày 25/11"})
    assert _state(at_dialogue)[2] == ["explain"]
    # Nothing left to move; a second run finds only the request that cannot move.
    assert definitions.migrate_instances(v1, v2["id"], False, designer)["migrated"] == 0
    with pytest.raises(Forbidden):
        definitions.migrate_instances(v1, v2["id"], True, people["lanhdao"])


def test_a_migrated_request_keeps_its_deadline_timers(world, people, fixed_clock):
    from giaitrinh.engine import timers
    from giaitrinh.engine.models import Job

    designer = people["thietke"]
    v1 = definitions.list_definitions(designer)["items"][0]["id"]
    code = submit()["code"]
    to_explain(code, people)
    v2 = definitions.upload(with_legal_review(), designer, forms={"legal_review.json": REVIEW_FORM})
    definitions.deploy(v2["id"], designer)
    assert definitions.migrate_instances(v1, v2["id"], False, designer)["migrated"] == 1
    with db.read_only() as s:
        waiting = [(j.step, j.due_at.isoformat()) for j in s.execute(select(Job).where(Job.status == "waiting")).scalars()]
    assert waiting == [("explain", "2026-12-07T16:59:59+00:00")]  # 15 days from 20/11, rolled to Monday 7/12
    fixed_clock.advance(days=18)
    assert timers.run_due(fixed_clock.now()) == 1
    assert "escalate" in _state(code)[2]
    assert tasks.list_tasks(people["lanhdao"], scope="unit", request_code=code, step="escalate")["total"] == 1


def test_the_command_line_migrates_after_a_dry_run(world, people, tmp_path):
    import os
    import subprocess
    import sys

    designer = people["thietke"]
    v1 = definitions.list_definitions(designer)["items"][0]["id"]
    code = submit()["code"]
    v2 = definitions.upload(with_legal_review(), designer, forms={"legal_review.json": REVIEW_FORM})
    definitions.deploy(v2["id"], designer)
    env = dict(os.environ, DATABASE_URL=world, GIAITRINH_INSTANCE=str(tmp_path))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "giaitrinh.cli", "migrate", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    dry = cli(str(v1), str(v2["id"]))
    assert dry.returncode == 0, dry.stderr
    assert f"{code}\tok\treceive" in dry.stdout and "dry run: 1/1 can move, 0 moved (v1 -> v2)" in dry.stdout
    assert _state(code)[0] == v1
    done = cli(str(v1), str(v2["id"]), "--run", "--as", "thietke")
    assert done.returncode == 0 and "1 moved" in done.stdout, done.stderr
    assert _state(code)[:2] == (v2["id"], v2["id"])
    refused = cli(str(v2["id"]), str(v1))
    assert refused.returncode != 0 and "deploy the target version first" in refused.stderr


def test_timers_inside_subprocesses_are_reachable_only_through_them():
    def subprocess_with_timer(triggered: bool, connected: bool) -> bytes:
        root = _doc()
        process = _process(root)
        sub = etree.SubElement(process, B + "subProcess", id="sub", triggeredByEvent="true" if triggered else "false")
        start = etree.SubElement(sub, B + "startEvent", id="sub_start")
        etree.SubElement(start, B + "outgoing").text = "Flow_sub"
        wait = etree.SubElement(sub, B + "intermediateCatchEvent", id="sub_timer")
        etree.SubElement(wait, B + "incoming").text = "Flow_sub"
        etree.SubElement(etree.SubElement(wait, B + "timerEventDefinition"), B + "timeDate").text = "deadlines['explain_by']"
        etree.SubElement(sub, B + "sequenceFlow", id="Flow_sub", sourceRef="sub_start", targetRef="sub_timer")
        if connected:  # after the last step: publish's "not published" end becomes the subprocess
            flow = process.find("bpmn:sequenceFlow[@id='Flow_gw_publish_end_not_published']", NS)
            flow.set("targetRef", "sub")
        return etree.tostring(root)

    found = problems_of(subprocess_with_timer(triggered=False, connected=False))
    assert any(p["element_id"] == "sub_timer" and "cannot be reached" in p["message"] for p in found)
    for triggered, connected in ((False, True), (True, False)):
        try:
            parse_definition(subprocess_with_timer(triggered, connected), forms=FORMS)
        except InvalidDefinition as exc:
            assert not any(p.element_id == "sub_timer" and "cannot be reached" in p.message for p in exc.problems), \
                (triggered, connected, [p.as_dict() for p in exc.problems])


def test_an_element_without_a_shape_is_a_warning_naming_it():
    forms = dict(FORMS, **{"legal_review.json": REVIEW_FORM})
    assert parse_definition(with_legal_review(), forms=forms).warnings == []
    undrawn = with_legal_review().replace(b'bpmnElement="legal_review"', b'bpmnElement="elsewhere"')
    warnings = parse_definition(undrawn, forms=forms).warnings
    assert len(warnings) == 1 and "'legal_review'" in warnings[0] and "BPMNDI" in warnings[0]
