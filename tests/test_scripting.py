"""The restricted script engine: escapes fail in conditions, scripts and timers, before and after a reload."""
import json

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from giaitrinh.engine import calendar as cal
from giaitrinh.engine import runtime
from giaitrinh.engine.definitions import InvalidDefinition, parse_definition
from giaitrinh.engine.scripting import RestrictedEnvironment, ScriptError, compile_expression, compile_script

ESCAPES = [
    "__import__('os').system('true')",
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "getattr((), '__class__')",
    "open('/etc/passwd').read()",
    "eval('1')",
    "globals()",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escapes_are_refused(source):
    env = RestrictedEnvironment()
    with pytest.raises(Exception) as caught:
        env.evaluate(source, {})
    assert not isinstance(caught.value, (AssertionError,))
    with pytest.raises(Exception):
        env.execute(f"x = {source}", {})


@pytest.mark.parametrize("source, message", [
    ("while True:\n    pass", "while"),
    ("import os", "import"),
    ("def f():\n    return 1", "function"),
    ("x = lambda: 1", "lambda"),
])
def test_unbounded_or_structural_code_does_not_compile(source, message):
    with pytest.raises(ScriptError) as caught:
        compile_script(source)
    assert message in caught.value.message
    assert caught.value.line == 1


def test_resource_bombs_stop():
    env = RestrictedEnvironment(time_limit=0.5)
    for source in ("'a' * 10**9", "sum(range(10**9))", "2 ** 10**8", "[1 for a in range(99999) for b in range(99999)]"):
        with pytest.raises(ScriptError):
            env.evaluate(source, {})


def test_ordinary_scripts_work_and_write_back_task_data():
    env = RestrictedEnvironment({"double": lambda x: 2 * x})
    data = {"deadlines": {}, "n": 3}
    env.execute("deadlines['a'] = double(n)\ntotal = 0\nfor i in range(n):\n    total += i", data)
    assert data == {"deadlines": {"a": 6}, "n": 3, "total": 3, "i": 2}
    assert env.evaluate("n > 2 and deadlines.get('a') == 6", data) is True


def test_syntax_error_names_its_line():
    with pytest.raises(ScriptError) as caught:
        compile_script("a = 1\nb = (")
    assert caught.value.line == 2
    with pytest.raises(ScriptError):
        compile_expression("")


def _process(body: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="http://example.org">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    {body}
    <bpmn:endEvent id="end"><bpmn:incoming>f9</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>""".encode()


def _script(code):
    return _process(f"""
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="s"/>
    <bpmn:scriptTask id="s"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f9</bpmn:outgoing>
      <bpmn:script>{code}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f9" sourceRef="s" targetRef="end"/>""")


def _condition(expr):
    return _process(f"""
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="g"/>
    <bpmn:exclusiveGateway id="g" default="f8"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f9</bpmn:outgoing><bpmn:outgoing>f8</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f9" sourceRef="g" targetRef="end">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{expr}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:endEvent id="end2"><bpmn:incoming>f8</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f8" sourceRef="g" targetRef="end2"/>""")


def _timer(expr):
    return _process(f"""
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="t"/>
    <bpmn:intermediateCatchEvent id="t"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f9</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDate xsi:type="bpmn:tFormalExpression">{expr}</bpmn:timeDate></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f9" sourceRef="t" targetRef="end"/>""")


def _escape_xml(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")


@pytest.mark.parametrize("build", [_script, _condition, _timer])
@pytest.mark.parametrize("escape", ["__import__('os').getcwd()", "().__class__.__base__.__subclasses__()"])
def test_escapes_are_refused_at_upload(build, escape):
    source = f"x = {escape}" if build is _script else escape
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(build(_escape_xml(source)))
    assert any("_" in p.message and p.line for p in caught.value.problems)


class _Definition:
    def __init__(self, xml):
        self.bpmn_xml = xml
        self.sha256 = str(hash(xml))
        self.manifest = {"process_id": "p", "statuses": {}, "tasks": {}}


@pytest.mark.parametrize("build", [_script, _condition, _timer])
@pytest.mark.parametrize("escape", ["__import__('os').getcwd()", "().__class__.__base__.__subclasses__()"])
def test_escapes_fail_at_run_time_even_if_a_diagram_bypassed_upload(build, escape):
    source = f"x = {escape}" if build is _script else escape
    definition = _Definition(build(_escape_xml(source)))
    with pytest.raises(Exception) as caught:
        runtime.start(definition, {}, cal.WorkingCalendar())
    assert "_" in str(caught.value) or "invalid" in str(caught.value)


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_workflow_loaded_back_from_its_state_stays_restricted(escape):
    definition = _Definition(_timer("'2030-01-01T00:00:00+07:00'"))
    running = runtime.start(definition, {"a": 1}, cal.WorkingCalendar())
    state = runtime.dump(running)
    assert "spec" not in json.loads(state)  # the spec comes from the cache, not the row
    loaded = runtime.load(definition, state, cal.WorkingCalendar())
    assert isinstance(loaded.workflow, BpmnWorkflow)
    task = loaded.workflow.get_tasks(state=TaskState.WAITING)[0]
    with pytest.raises(Exception):
        loaded.workflow.script_engine.evaluate(task, escape)
    assert loaded.workflow.script_engine.evaluate(task, "a + 1") == 2
