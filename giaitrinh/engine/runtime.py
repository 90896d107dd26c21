"""Load a workflow from its row, run it with SpiffWorkflow, save it back.

This is the only module that touches SpiffWorkflow objects at run time. It keeps
three promises of the architecture:

* parsed specs are cached by definition id (definitions are immutable), and the
  serialized state stored per request carries no copy of the spec;
* every loaded workflow runs with the restricted script engine, because the
  script engine is not part of the serialization;
* SpiffWorkflow's timers read the engine clock, so moving the clock (tests, demo)
  moves BPMN time too.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable
from uuid import UUID

import orjson
from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default import workflow as _spiff_workflow_converters
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, TaskConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.bpmn.util.subworkflow import BpmnBaseWorkflow
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow import task as _spiff_task
from SpiffWorkflow.task import Task as SpiffTask
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskState

from . import calendar as cal
from . import clock
from .scripting import make_script_engine


class _EngineDatetime(datetime):
    """What SpiffWorkflow's timer module sees as ``datetime``: its now() is the engine clock."""

    @classmethod
    def now(cls, tz=None):
        current = clock.now()
        if tz is None:
            return current.astimezone().replace(tzinfo=None)
        return current.astimezone(tz)


_spiff_timer.datetime = _EngineDatetime


# Task ids are strings, not UUID objects. SpiffWorkflow keys every task by its id and finds a
# task's parent and children through that dict, thousands of times per step; a UUID's hash and
# equality are Python methods, a string's are built in and its hash is cached. Loading, firing
# and dumping a workflow took 28% less time (3.9 -> 2.8 ms a timer firing). The stored state
# is unchanged: SpiffWorkflow writes ids as these same strings, and reads them back here as
# strings (the converters' ``UUID(...)``, and a value stored with the UUID typename). SpiffWorkflow
# is pinned (pyproject.toml): these are the only places it makes or parses a task id.
# GIAITRINH_SPIFF_UUID_TASK_IDS=1 leaves SpiffWorkflow's own UUID objects, the way back should an
# upgrade need it; GIAITRINH_SPIFF_AS_SHIPPED=1 (below) does too: bench/lifecycle.py's reference.
TASK_IDS_AS_STRINGS = os.environ.get("GIAITRINH_SPIFF_UUID_TASK_IDS", "") != "1" and os.environ.get(
    "GIAITRINH_SPIFF_AS_SHIPPED", "") != "1"
_task_id = str if TASK_IDS_AS_STRINGS else UUID


class _SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Serializes a workflow without its spec; the spec comes from the definition cache."""

    def to_dict(self, workflow):
        # BpmnWorkflowConverter.to_dict would convert the whole spec only for it to be
        # dropped here (40% of a dump); build the same dict without it.
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        dct = dict(dct)
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], _task_id, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(_task_id(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = _SpecFreeWorkflowConverter
_serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_config))


class _Entropy(threading.local):
    """A thread's supply of the system's random bytes, drawn 4 KiB at a time: one getrandom call
    cost more than the rest of making an id. Each id still takes 16 bytes no other id takes."""

    def __init__(self):
        self.buffer = b""
        self.at = 0


_entropy = _Entropy()


def _forget_entropy() -> None:
    # A forked worker must not make the ids its parent makes from the same bytes.
    global _entropy
    _entropy = _Entropy()


os.register_at_fork(after_in_child=_forget_entropy)


def _new_task_id() -> str:
    """``str(uuid4())`` without the UUID object: a version 4 UUID's text, from 16 random bytes.
    SpiffWorkflow makes some fifty a lifecycle; the object and its formatting cost 2 µs of each."""
    entropy = _entropy
    at = entropy.at
    if at >= len(entropy.buffer):
        entropy.buffer, at = os.urandom(4096), 0
    entropy.at = at + 16
    raw = bytearray(entropy.buffer[at:at + 16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


if TASK_IDS_AS_STRINGS:  # where SpiffWorkflow makes and parses task ids (TASK_IDS_AS_STRINGS above)
    _spiff_task.uuid4 = _new_task_id
    _spiff_workflow_converters.UUID = str
    _serializer.registry.convert_from_dict[_serializer.registry.typenames[UUID]] = lambda value: value["value"]

# SpiffWorkflow builds the extras of a log record (a dict of eight fields, two state names) at every
# task state change, before the logger decides whether to write it: 1.5% of a lifecycle, with the
# logger at its default level, which writes none. The same method, that builds them only when the
# record is written. GIAITRINH_SPIFF_AS_SHIPPED=1 leaves this, the walks below and the string task
# ids as shipped.
SPIFF_AS_SHIPPED = os.environ.get("GIAITRINH_SPIFF_AS_SHIPPED", "") == "1"


def _set_state(self, value: int) -> None:
    if value != self.state:
        now = time.time()
        elapsed = now - self.last_state_change
        self.last_state_change = now
        self._state = value
        if _spiff_task.logger.isEnabledFor(logging.INFO):
            _spiff_task.logger.info(f"State changed to {TaskState.get_name(value)}",
                                    extra=self.collect_log_extras({"elapsed": elapsed}))
    elif _spiff_task.logger.isEnabledFor(logging.DEBUG):
        _spiff_task.logger.debug(f"State set to {TaskState.get_name(value)}", extra=self.collect_log_extras())


if not SPIFF_AS_SHIPPED:
    SpiffTask._set_state = _set_state


# SpiffWorkflow finds a workflow's READY and WAITING tasks by walking its whole task tree with a
# general iterator (a filter object, a depth count, a list it pops from the front), some thirty
# walks a step: a sixth of a lifecycle. For the walks that ask only for states (and ``manual``),
# in a workflow without subprocesses, ``_walk`` visits the same tasks in the same order: depth
# first, a task before its children, below a task only if its state is at least the lowest state
# the asked states can follow (TaskIterator.min_state), and lazily, as the iterator does (a task's
# children are read when the task is reached, before the caller sees it, so tasks that running it
# adds are walked too). The iterator stops descending 1,000 levels down: a tree of fewer tasks
# than that never gets there; a larger one, or one with subprocesses, is left to the iterator.
# In every test, tests/conftest.py compares each walk with the iterator's.
_WALK_MAX_TASKS = 1000
_FILTERS_WALKED = frozenset(("state", "manual"))


def _lowest_state_followed(state: int) -> int:
    if state & TaskState.PREDICTED_MASK:
        return TaskState.MAYBE
    if state & TaskState.DEFINITE_MASK:
        return TaskState.FUTURE
    return TaskState.COMPLETED


def _walk(workflow, state: int = TaskState.ANY_MASK, manual: bool | None = None):
    lowest = _lowest_state_followed(state)
    child_task = workflow.tasks.get
    stack = [workflow.task_tree]
    pop, push = stack.pop, stack.extend
    while stack:
        task = pop()
        task_state = task._state
        children = task._children
        if children and task_state >= lowest:
            push(map(child_task, reversed(children)))
        # The iterator's filter: the states, changed since 0 (its updated_ts), and ``manual``.
        if task_state & state and task.last_state_change >= 0 and (manual is None or task.task_spec.manual == manual):
            yield task


def _walkable(workflow) -> bool:
    return not workflow.top_workflow.subprocesses and len(workflow.tasks) < _WALK_MAX_TASKS


_shipped_get_tasks_iterator = BpmnBaseWorkflow.get_tasks_iterator
_shipped_update_waiting_tasks = BpmnBaseWorkflow.update_waiting_tasks


def _get_tasks_iterator(self, first_task=None, **kwargs):
    if first_task is None and kwargs.keys() <= _FILTERS_WALKED and _walkable(self):
        return _walk(self, kwargs.get("state", TaskState.ANY_MASK), kwargs.get("manual"))
    return _shipped_get_tasks_iterator(self, first_task, **kwargs)


def _update_waiting_tasks(self) -> None:
    if not _walkable(self):
        return _shipped_update_waiting_tasks(self)
    for task in _walk(self, TaskState.WAITING):
        task.task_spec._update(task)


if not SPIFF_AS_SHIPPED:
    BpmnBaseWorkflow.get_tasks_iterator = _get_tasks_iterator
    BpmnBaseWorkflow.update_waiting_tasks = _update_waiting_tasks

_spec_cache: dict[str, tuple[Any, dict]] = {}
_spec_lock = threading.Lock()


def parse_spec(bpmn_xml: str | bytes, process_id: str):
    """Parse one process with a fresh parser (a failed parse leaves a partial spec cached)."""
    parser = SpiffBpmnParser()
    data = bpmn_xml.encode() if isinstance(bpmn_xml, str) else bpmn_xml
    xml_parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    parser.add_bpmn_xml(etree.fromstring(data, xml_parser).getroottree(), filename=f"{process_id}.bpmn")
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)


def spec_for(definition) -> tuple[Any, dict]:
    """The parsed spec of a definition row, parsed once per process per sha256."""
    key = definition.sha256
    cached = _spec_cache.get(key)
    if cached is None:
        with _spec_lock:
            cached = _spec_cache.get(key)
            if cached is None:
                cached = parse_spec(definition.bpmn_xml, definition.manifest["process_id"])
                _spec_cache[key] = cached
    return cached


# -- the functions BPMN scripts may call ------------------------------------------


def script_functions(calendar: cal.WorkingCalendar) -> dict:
    def now() -> str:
        return clock.now().astimezone(cal.LOCAL_TZ).isoformat(timespec="seconds")

    def _day(value) -> Any:
        if value is None:
            return cal.local_date(clock.now())
        return cal.local_date(datetime.fromisoformat(str(value)))

    def add_working_days(start, n) -> str:
        """End of the n-th working day after ``start`` (the day of the event is not counted)."""
        return cal.end_of_day(calendar.add_working_days(_day(start), int(n))).isoformat()

    def add_days(start, n) -> str:
        """End of a period of n days after ``start``, rolled past weekends and holidays."""
        return cal.end_of_day(calendar.add_days(_day(start), int(n))).isoformat()

    return {"now": now, "add_working_days": add_working_days, "add_days": add_days}


def script_engine(calendar: cal.WorkingCalendar):
    return make_script_engine(functions=script_functions(calendar))


# -- running ------------------------------------------------------------------------


@dataclass
class Running:
    """A workflow loaded for one use case, with what is needed to save it back."""

    workflow: BpmnWorkflow
    manifest: dict
    sha256: str | None = None  # of the definition it runs, so a saved object can be kept
    # current_position as the projection last wrote it: valid until the workflow runs again,
    # which never happens once it is saved (services._common.save_running).
    position: tuple[str | None, dict, bool] | None = None


def start(definition, data: dict, calendar: cal.WorkingCalendar) -> Running:
    spec, subprocess_specs = spec_for(definition)
    wf = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine(calendar))
    start_task = wf.get_tasks(state=TaskState.READY)[0]
    start_task.data.update(deepcopy(data))
    step(wf)
    return Running(wf, definition.manifest, definition.sha256)


def load(definition, state: str, calendar: cal.WorkingCalendar) -> Running:
    spec, subprocess_specs = spec_for(definition)
    dct = state_dict(state)
    _serializer.migrate(dct)
    if dct.get("subprocesses") or not _FAST_LOAD_OK or \
            any(task.get("typename") != "Task" for task in dct["tasks"].values()):
        wf = _serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)
    else:
        wf = _workflow_from_dict(dct, spec, subprocess_specs)
    wf.script_engine = script_engine(calendar)
    return Running(wf, definition.manifest, definition.sha256)


def dump(running: Running) -> str:
    wf = running.workflow
    if wf.subprocesses or not _FAST_DUMP_OK:
        return _serializer.serialize_json(wf)
    registry = _serializer.registry
    registry._encoder_mode = True  # as serialize_json does
    try:
        dct = _workflow_dict(wf, registry)
        dct[_serializer.VERSION_KEY] = _serializer.VERSION
        return state_text(dct)
    finally:
        registry._encoder_mode = False


# The state's JSON goes through orjson: a tenth of the standard library's time to write, half to
# read (a timer firing in a burst reads and writes its case's whole workflow). What orjson cannot
# write exactly (an integer beyond 64 bits, which it would also read back as a float) is written
# by the standard library, in its spaced layout, like every state written before orjson; only
# compact text is read by orjson. Non-finite floats become null (forms refuse them).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
_spiff_encoder = _serializer._encoder_cls()


def state_text(dct: dict) -> str:
    """The stored text of a serialized workflow's dict; SpiffWorkflow's encoder makes its typed
    values (datetimes, sets, registered objects), as with json.dumps."""
    try:
        return orjson.dumps(dct, default=_spiff_encoder.default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits, or a value SpiffWorkflow's encoder refuses as well: the
        # standard library writes the first exactly and raises the same error for the second.
        return json.dumps(dct, cls=_serializer._encoder_cls)


def state_dict(text: str) -> dict:
    """A stored workflow's dict, as ``json.loads`` reads it."""
    return orjson.loads(text) if _is_compact(text) else json.loads(text)


def _is_compact(text: str) -> bool:
    # Written by orjson: no space after the first key's colon. The first key of every state is a
    # plain name ("data"); any other text is left to the standard library, which reads anything.
    end = text.find('"', 2)
    return text.startswith('{"') and text.startswith('":', end) and not text.startswith('": ', end)


# SpiffWorkflow's converters dispatch every task through the registry (class lookup,
# partial, dict update) and turn each task id into a string four times. For a workflow
# without subprocesses (the product's lifecycle), _workflow_dict builds the very same
# dict directly: same keys, same order, same values, so the JSON is byte-for-byte what
# serialize_json writes (tests/conftest.py compares the two for every state any test writes).
_FAST_DUMP_OK = (
    _serializer.registry.typenames.get(BpmnWorkflow) == "BpmnWorkflow"
    and _serializer.registry.typenames.get(SpiffTask) == "Task"
    and getattr(getattr(_serializer.registry.convert_to_dict.get("Task"), "args", (None, None))[-1], "__func__", None)
    is TaskConverter.to_dict
)


def _workflow_dict(wf: BpmnWorkflow, registry) -> dict:
    if TASK_IDS_AS_STRINGS:
        s = str  # the ids are their own text
    else:
        ids: dict[str, str] = {}

        def s(uuid: str) -> str:
            text = ids.get(uuid)
            if text is None:
                text = ids[uuid] = str(uuid)
            return text

    convert = registry.convert
    by_id = wf.tasks
    tasks = {}
    for key, task in by_id.items():
        parent = by_id.get(task._parent) if task._parent is not None else None  # Task.parent, inlined
        if parent is None:
            data, delta = task.data, {}
        else:
            mine, theirs = task.data, parent.data
            data = {}
            delta = {
                "updates": {k: mine[k] for k in mine if k not in theirs or mine[k] != theirs[k]},
                "deletions": [k for k in theirs if k not in mine],
            }
        internal = task.internal_data
        tasks[s(key)] = {
            "id": s(task.id),
            "parent": s(task._parent) if parent is not None else None,
            "children": list(map(s, task._children)),
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": convert(internal) if internal else {},
            "data": data,
            "delta": delta,
            "typename": "Task",
        }
    return {
        "data": convert(registry.clean(wf.data)),
        "correlations": wf.correlations,
        "last_task": s(wf.last_task.id) if wf.last_task is not None else None,
        "success": wf.success,
        "completed": wf.completed,
        "tasks": tasks,
        "root": s(wf.task_tree.id),
        "subprocesses": {},
        "bpmn_events": convert(wf.bpmn_events),
        "typename": "BpmnWorkflow",
    }


# Loading is dumping's mirror: SpiffWorkflow's registry sends every task dict through its generic
# restore (type checks, a copy of the dict without its typename, a partial), 13% of a burst of
# timers. For a workflow without subprocesses, _workflow_from_dict makes the very same objects
# directly, in the same order, as TaskConverter.from_dict and _SpecFreeWorkflowConverter.from_dict
# do (tests/conftest.py loads every state any test reads both ways and compares them).
def _converter(typename: str, method):
    """The converter object whose ``method`` the registry calls for ``typename``, if it is that one."""
    bound = getattr(_serializer.registry.convert_from_dict.get(typename), "args", (None,))[-1]
    return bound.__self__ if getattr(bound, "__func__", None) is method else None


_TASK_CONVERTER = _converter("Task", TaskConverter.from_dict)
_WORKFLOW_CONVERTER = _converter("BpmnWorkflow", _SpecFreeWorkflowConverter.from_dict)
_FAST_LOAD_OK = _FAST_DUMP_OK and _TASK_CONVERTER is not None and _WORKFLOW_CONVERTER is not None


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _restore(value):
    """SpiffWorkflow's ``registry.restore`` of a value read from JSON (dicts, lists, scalars): a
    typed dict becomes its object, anything else is copied as it is. The same result, without a
    method call for each scalar: most of a state's values are strings and numbers, and restoring
    them was two thirds of loading a workflow."""
    kind = type(value)
    if kind is dict:
        if "typename" in value:
            return _serializer.registry.restore(value)
        return {k: v if type(v) in _JSON_SCALARS else _restore(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _JSON_SCALARS else _restore(v) for v in value]
    if kind in _JSON_SCALARS:
        return value
    return _serializer.registry.restore(value)


def _workflow_from_dict(dct: dict, spec, subprocess_specs) -> BpmnWorkflow:
    restore = _restore
    merge = DeepMerge.merge
    workflow = _WORKFLOW_CONVERTER.target_class(spec, subprocess_specs or {}, deserializing=True)
    task_class = _TASK_CONVERTER.target_class
    task_specs = spec.task_specs
    events = workflow.event_manager
    tasks = workflow.tasks  # each task enters it as it is made, its parent before it
    for values in dct["tasks"].values():
        task_spec = task_specs.get(values["task_spec"])
        task = task_class(workflow, task_spec, state=values["state"], id=_task_id(values["id"]))
        parent_id = values["parent"]
        task._parent = _task_id(parent_id) if parent_id is not None else None
        task._children = [_task_id(child) for child in values["children"]]
        task.last_state_change = values["last_state_change"]
        task.triggered = values["triggered"]
        task.internal_data = restore(values["internal_data"])
        if isinstance(task_spec, CatchingEvent) and task.has_state(TaskState.WAITING):
            events.add_task(task)
        delta = values.get("delta")
        parent = tasks.get(task._parent)
        if delta and parent is not None:
            data = merge({}, parent.data)
            data.update(restore(delta.get("updates", {})))
            for key in delta.get("deletions", {}):
                if key in data:
                    del data[key]
        else:
            data = restore(values["data"])
        task.data = data
    workflow.task_tree = tasks.get(_task_id(dct["root"]))
    workflow.success = dct["success"]
    workflow.completed = dct.get("completed", False)
    workflow.correlations = dct.get("correlations", {})
    if isinstance(dct["last_task"], str):
        workflow.last_task = tasks.get(_task_id(dct["last_task"]))
    workflow.data = restore(dct.get("data", {}))
    workflow.bpmn_events = restore(dct.get("bpmn_events", []))
    return workflow


# -- live workflows kept between use cases ----------------------------------------------
#
# Deserializing an instance costs more than running a step of it. A process keeps the
# workflow objects it saved last, keyed by request, beside the exact state text it wrote
# and the row version that write produced. A later use case takes the object only if the
# row still holds that version and that text: any other writer (another process, a
# restore, a different database at the same URL) changes one of them and the state is
# deserialized as before. An entry is removed when taken and put back only after the
# transaction that saved it committed, so a rolled-back use case never leaves a mutated
# object behind, and two threads never share one.

LIVE_CACHE_SIZE = 512


@dataclass
class _Live:
    version: int
    state: str
    sha256: str
    workflow: BpmnWorkflow


_live: OrderedDict[Any, _Live] = OrderedDict()
_live_lock = threading.Lock()


def keep_live(key, version: int | None, state: str, running: Running) -> None:
    """Remember a saved workflow; call only once the transaction that wrote ``state`` committed."""
    if version is None or running.sha256 is None:
        return
    if running.workflow.completed:  # a finished case is rarely loaded again: do not hold it
        forget_live(key)
        return
    with _live_lock:
        _live[key] = _Live(version, state, running.sha256, running.workflow)
        _live.move_to_end(key)
        while len(_live) > LIVE_CACHE_SIZE:
            _live.popitem(last=False)


def forget_live(key=None) -> None:
    with _live_lock:
        if key is None:
            _live.clear()
        else:
            _live.pop(key, None)


def load_live(key, version: int, definition, state: str, calendar: cal.WorkingCalendar) -> Running:
    """``load``, reusing this process's own object when the row is exactly as it saved it."""
    with _live_lock:
        entry = _live.pop(key, None)
    if entry is not None and entry.version == version and entry.sha256 == definition.sha256 \
            and entry.state == state:
        wf = entry.workflow
        # The script engine is not part of the state: set it on every load, from today's calendar.
        wf.script_engine = script_engine(calendar)
        return Running(wf, definition.manifest, definition.sha256)
    return load(definition, state, calendar)


def step(wf: BpmnWorkflow) -> None:
    """Run engine tasks until only human tasks and waiting events remain.

    Run twice: a timer that fires at the end of ``do_engine_steps`` leaves its
    successor READY. The second round is skipped when that final refresh fired
    nothing, since it would then find nothing to do (it walks the whole task tree
    three times to find that out). SpiffWorkflow is pinned: ``_do_engine_steps`` is
    the loop body of ``do_engine_steps``.
    """
    while wf._do_engine_steps():
        pass
    if not _refresh_timers(wf):
        return
    wf.refresh_timers()
    wf.do_engine_steps()


def _refresh_timers(wf: BpmnWorkflow) -> bool:
    """``wf.refresh_timers()``; True if it changed the state of a waiting event."""
    before = [(task, task.state) for task in wf.event_manager.tasks.values()]
    wf.refresh_timers()
    return any(task.state != state for task, state in before) or len(wf.event_manager.tasks) != len(before)


def open_tasks(wf: BpmnWorkflow) -> list:
    """The workflow's ready and waiting tasks, in the task tree's order.

    What ``ready_human_tasks``, ``waiting_timers`` and ``current_position`` each look for, taken from
    one walk of the tree when they are asked of the same, unchanged workflow (the projection asks
    all three after every step): a walk for READY and one for WAITING go over the same tasks in
    the same order (both descend from FUTURE on), so each keeps the order its own walk gives.
    """
    return wf.get_tasks(state=TaskState.READY | TaskState.WAITING)


def ready_human_tasks(wf: BpmnWorkflow, open_now: list | None = None):
    """``open_now``: ``open_tasks(wf)`` when the caller walked the tree already."""
    return [t for t in (open_tasks(wf) if open_now is None else open_now)
            if t.state == TaskState.READY and t.task_spec.manual]


def find_task(wf: BpmnWorkflow, task_id: str):
    try:
        key = UUID(task_id)  # any spelling of a UUID; SpiffWorkflow's ids are written as str(key)
        return wf.get_task_from_id(str(key) if TASK_IDS_AS_STRINGS else key)
    except (ValueError, KeyError, TypeError):
        return None


def complete_human_task(running: Running, task_id: str, data: dict, form_fields: Iterable[str]) -> None:
    task = find_task(running.workflow, task_id)
    if task is None or task.state != TaskState.READY or not task.task_spec.manual:
        raise LookupError(task_id)
    # A form's fields are replaced, not merged: a box left empty this time must not
    # keep what was submitted the last time round a loop (e.g. an extension).
    for name in form_fields:
        task.data.pop(name, None)
    task.data.update(deepcopy(data))
    task.run()
    step(running.workflow)


def deliver_message(running: Running, name: str, payload: dict) -> bool:
    """Deliver a BPMN message (e.g. the requester's additional information)."""
    wf = running.workflow
    waiting = [
        t for t in wf.get_tasks(state=TaskState.WAITING)
        if isinstance(getattr(t.task_spec, "event_definition", None), MessageEventDefinition)
        and t.task_spec.event_definition.name == name
    ]
    if not waiting:
        return False
    for task in waiting:
        task.data.update(deepcopy(payload))
    # Throw with the catching spec's own definition: equality includes its class.
    wf.catch(BpmnEvent(waiting[0].task_spec.event_definition, payload))
    step(wf)
    return True


@dataclass
class WaitingTimer:
    spiff_task_id: str
    bpmn_id: str
    due_at: datetime
    attached_to: str | None


def waiting_timers(wf: BpmnWorkflow, open_now: list | None = None) -> list[WaitingTimer]:
    timers = []
    for task in (open_tasks(wf) if open_now is None else open_now):
        if task.state != TaskState.WAITING:
            continue
        spec = task.task_spec
        event_definition = getattr(spec, "event_definition", None)
        if not isinstance(event_definition, TimerEventDefinition):
            continue
        value = task._get_internal_data("event_value")
        if value is None:
            event_definition.has_fired(task)
            value = task._get_internal_data("event_value")
        if not isinstance(value, str):
            continue
        due = TimerEventDefinition.get_datetime(value).astimezone(timezone.utc)
        attached = None
        if isinstance(spec, BoundaryEvent):
            for sibling in task.parent.children:
                if not isinstance(sibling.task_spec, BoundaryEvent):
                    attached = sibling.task_spec.bpmn_id
        timers.append(WaitingTimer(str(task.id), spec.bpmn_id, due, attached))
    return timers


def fire_timer(running: Running, spiff_task_id: str) -> bool:
    """Fire one waiting timer now, whatever its time; False if it no longer waits."""
    task = find_task(running.workflow, spiff_task_id)
    if task is None or task.state != TaskState.WAITING:
        return False
    task._set_internal_data(event_fired=True)
    running.workflow.refresh_timers()
    step(running.workflow)
    return True


def shift_timers(running: Running, new_due: dict[str, str]) -> None:
    """Re-arm waiting timers at new absolute times (after a suspension)."""
    for spiff_task_id, value in new_due.items():
        task = find_task(running.workflow, spiff_task_id)
        if task is not None and task.state == TaskState.WAITING:
            task._set_internal_data(event_value=value)


def update_data(running: Running, changes: dict) -> None:
    """Apply changes to the data of every open task (e.g. moved deadlines)."""
    for task in running.workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(task.data.get(key), dict):
                task.data[key].update(deepcopy(value))
            else:
                task.data[key] = deepcopy(value)


def evaluate(running: Running, task, expression: str) -> Any:
    return running.workflow.script_engine.evaluate(task, expression)


# -- what the projection reads -----------------------------------------------------


def current_position(running: Running, open_now: list | None = None) -> tuple[str | None, dict, bool]:
    """(status, data, main path ended) read from the workflow's open or last nodes."""
    wf = running.workflow
    statuses = running.manifest.get("statuses", {})
    open_here = [
        t for t in (open_tasks(wf) if open_now is None else open_now)
        if t.task_spec.bpmn_id in statuses and not isinstance(t.task_spec, BoundaryEvent)
    ]
    if open_here:
        task = max(open_here, key=lambda t: t.last_state_change)
        return statuses[task.task_spec.bpmn_id], task.data, False
    ended = [
        t for t in wf.get_tasks(state=TaskState.COMPLETED)
        if t.task_spec.bpmn_id in statuses and not t.task_spec.manual
        and not isinstance(t.task_spec, CatchingEvent)
    ]
    if ended:
        task = max(ended, key=lambda t: t.last_state_change)
        return statuses[task.task_spec.bpmn_id], task.data, True
    return None, wf.data, wf.completed


def is_completed(running: Running) -> bool:
    return running.workflow.completed


def cancel(running: Running) -> None:
    running.workflow.cancel()


def evaluate_with(running: Running, task_id: str, expression: str, extra: dict) -> Any:
    """Evaluate an expression on a task's data as it would be with ``extra`` submitted."""
    task = find_task(running.workflow, task_id)
    context = dict(task.data) if task is not None else {}
    context.update(extra)
    return running.workflow.script_engine.environment.evaluate(expression, context)


def escalation_origin(running: Running, task_id: str) -> tuple[str, datetime] | None:
    """For a task reached from a timer boundary event: (the late step, its deadline)."""
    task = find_task(running.workflow, task_id)
    while task is not None:
        spec = task.task_spec
        if isinstance(spec, BoundaryEvent) and isinstance(getattr(spec, "event_definition", None), TimerEventDefinition):
            value = task._get_internal_data("event_value")
            due = TimerEventDefinition.get_datetime(value).astimezone(timezone.utc) if isinstance(value, str) else None
            attached = next((s.task_spec.bpmn_id for s in task.parent.children
                             if not isinstance(s.task_spec, BoundaryEvent)), spec.bpmn_id)
            return attached, due
        task = task.parent
    return None


# -- supervision: where an instance stands, and moving its token --------------------------------


def element_states(running: Running) -> dict[str, list[str]]:
    """BPMN element ids of one instance: the path it completed and where it waits now.

    For the supervisor's diagram of ONE case (lists never call this: they read typed rows).
    """
    wf = running.workflow
    completed: list[str] = []
    active: list[str] = []
    for task in wf.get_tasks():
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        if not bpmn_id:
            continue  # SpiffWorkflow's own start/end/split specs have no element in the diagram
        if task.state == TaskState.COMPLETED:
            if bpmn_id not in completed:
                completed.append(bpmn_id)
        elif task.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED):
            if bpmn_id not in active:
                active.append(bpmn_id)
    return {"completed": completed, "active": active}


def element_of(running: Running, spiff_task_id: str | None) -> str | None:
    """The BPMN element id of a task instance (a timer a job stands for), if it still exists."""
    task = find_task(running.workflow, spiff_task_id) if spiff_task_id else None
    return getattr(task.task_spec, "bpmn_id", None) if task is not None else None


def passed_user_tasks(running: Running) -> list[str]:
    """User tasks this instance completed at least once: where a token may be moved back to."""
    out: list[str] = []
    for task in running.workflow.get_tasks(state=TaskState.COMPLETED):
        if task.task_spec.manual and task.task_spec.bpmn_id not in out:
            out.append(task.task_spec.bpmn_id)
    return out


def move_token(running: Running, element_id: str, keep: Iterable[str] = ()) -> str:
    """Put the token back on a user task the instance already passed (SpiffWorkflow's reset).

    The newest completed instance of that task is reset (its successors, timers included, are
    dropped) and becomes ready again. ``keep`` names data keys carried over from where the
    case stands now (its legal deadlines), so a supervisor's correction never restarts a clock.
    Returns the id of the task made ready again (SpiffWorkflow keeps the completed task's id).
    Raises LookupError when the task was never completed in this instance.
    """
    wf = running.workflow
    done = [t for t in wf.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.manual and t.task_spec.bpmn_id == element_id]
    if not done:
        raise LookupError(element_id)
    target = max(done, key=lambda t: t.last_state_change)
    current = [t for t in wf.get_tasks(state=TaskState.READY | TaskState.WAITING) if t.task_spec.manual]
    source = max(current, key=lambda t: t.last_state_change).data if current else wf.data
    carried = {key: source[key] for key in keep if key in source}
    data = deepcopy(target.parent.data)
    data.update(deepcopy(carried))
    removed = wf.reset_from_task_id(target.id, data=data)
    # SpiffWorkflow 3.2 leaves the dropped waiting events registered with the event manager
    # (a timer of a task that no longer exists would then be refreshed): unregister them.
    for task in removed:
        wf.event_manager.remove_task(task)
    live = set(wf.tasks)
    for task_id in [t for t in wf.event_manager.tasks if t not in live]:
        wf.event_manager.tasks.pop(task_id, None)
    # The task's boundary timers were reset from the old data: they arm at today's deadlines.
    for sibling in target.parent.children:
        if sibling is not target:
            sibling.data.update(deepcopy(carried))
    step(wf)
    return str(target.id)
# -- moving a running instance to another version of its process ---------------------

ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


def migration_problems(running: Running, definition) -> list[str]:
    """Why this instance cannot move to ``definition`` (empty when it can).

    Every task the instance has reached (not merely predicted) must exist in the new
    version under the same id; each active one (a step waiting for a person, a timer
    waiting to fire) must keep its kind there: a user task stays a user task, a timer a timer.
    """
    spec, _subprocess_specs = spec_for(definition)
    problems = []
    if running.workflow.subprocesses:
        problems.append("hồ sơ có tiến trình con: chưa hỗ trợ chuyển phiên bản (subprocesses are not migrated)")
    for task in running.workflow.get_tasks():
        if task.has_state(TaskState.PREDICTED_MASK):
            continue
        name = task.task_spec.name
        target = spec.task_specs.get(name)
        label = task.task_spec.bpmn_id or name
        if target is None:
            if task.has_state(ACTIVE):
                problems.append(f"bước đang mở '{label}' không có trong phiên bản mới (active step missing)")
            else:
                problems.append(f"bước đã qua '{label}' không có trong phiên bản mới (a step it went through is missing)")
            continue
        if task.has_state(ACTIVE):
            if type(target) is not type(task.task_spec):
                problems.append(f"bước '{label}' đổi loại {type(task.task_spec).__name__} → {type(target).__name__} "
                                "(an active step changed kind)")
            old_event = getattr(task.task_spec, "event_definition", None)
            if isinstance(old_event, TimerEventDefinition) and \
                    not isinstance(getattr(target, "event_definition", None), TimerEventDefinition):
                problems.append(f"hẹn giờ '{label}' không còn là hẹn giờ (a waiting timer is gone)")
    return list(dict.fromkeys(problems))


def migrate(running: Running, definition) -> Running:
    """The same instance on ``definition``'s spec: tasks reached keep their ids, data and timers;
    what was only predicted after an active task is predicted again from the new diagram.

    Call ``migration_problems`` first; the result is checked by a dump and reload.
    """
    spec, subprocess_specs = spec_for(definition)
    wf = running.workflow
    wf.spec = spec
    wf.subprocess_specs = subprocess_specs
    for task in list(wf.get_tasks()):
        target = spec.task_specs.get(task.task_spec.name)
        if target is not None:
            task.task_spec = target
    for task in list(wf.get_tasks(state=ACTIVE)):
        if task.id in wf.tasks:
            task._drop_children()  # only children not yet finished: the predictions
            task.task_spec._predict(task, mask=TaskState.PREDICTED_MASK | task.state)
    for task in list(wf.get_tasks()):  # a prediction left on a removed spec is dropped with its branch
        if spec.task_specs.get(task.task_spec.name) is not task.task_spec and task.id in wf.tasks:
            if not task.has_state(TaskState.PREDICTED_MASK):
                raise ValueError(f"task {task.task_spec.name} has no spec in the new version")
            wf._remove_task(task.id)
    migrated = Running(wf, definition.manifest, definition.sha256)
    # The proof: the new state loads with the new spec alone.
    load(definition, _serializer.serialize_json(wf), cal.WorkingCalendar())
    return migrated
