"""How fast the engine takes a request through its whole default lifecycle, and what that costs
against plain SpiffWorkflow.

One run measures three things on the same N requests and the same happy path
(submit -> receive: accept -> assign -> explain -> approve -> publish):

1. The engine as deployed: the service functions an official's click calls, on a
   real database (a fresh temporary SQLite file unless ``--database-url`` is given),
   so every step loads and saves the workflow state, syncs the task projection,
   writes the hash-chained audit and the timer jobs. Requests are walked one after
   the other by a single writer. Reported: lifecycles/s over the wall time
   (submission, inbox look-ups and completions), completions/s over the time spent
   inside ``tasks.complete`` only, p50/p95/max latency of a completion and of a
   submission.
2. The same lifecycle with plain SpiffWorkflow as shipped, the performance issue's
   reference: its ``SpiffBpmnParser``, its ``PythonScriptEngine`` (the diagram's date
   functions in a ``TaskDataEnvironment``), its task API, no database. Once purely in
   memory, and once with its own ``BpmnWorkflowSerializer`` round-trip
   (``serialize_json`` then ``deserialize_json``) after every step, as a user of the
   library who persists a workflow has to do.
3. The same lifecycle on SpiffWorkflow with the engine's own runtime
   (``giaitrinh.engine.runtime``: restricted script engine, spec-free dump and load through
   orjson), no database: in memory, and with the engine's round-trip at every step, the
   least the engine's persistence has to pay. A stricter yardstick than the issue's.
4. Peak RSS of the engine's process (ru_maxrss).

Phases 2 and 3 run in a process of their own with SpiffWorkflow as shipped
(``GIAITRINH_SPIFF_AS_SHIPPED=1``): the engine keeps task ids as strings and builds a state
change's log extras only when the record is written (engine/runtime.py), which speeds up
SpiffWorkflow itself, and the reference must be SpiffWorkflow as shipped.

The ratios say how much of the engine's time is the workflow itself and how much is
persistence, projection and audit. The clock is a FixedClock and the background
scheduler is never started, so no timer fires during the run. Progress goes to
stderr; the last line of stdout is one JSON object with every figure, including
the keys the performance issue reads: ``bench``, ``db``, ``n``, ``lifecycles_per_s``,
``task_completions_per_s``, ``raw_spiff_per_s``, ``raw_spiff_serialized_per_s`` and
``ratio_to_serialized`` (engine lifecycles/s over plain SpiffWorkflow-with-serializer's),
and ``ratio_to_engine_serializer`` (over phase 3's round-trip rate).

    python bench/lifecycle.py [--n 200] [--database-url URL]
"""
from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

# Runnable as a plain script from anywhere, without installing the package.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from giaitrinh import demo, server  # noqa: E402
from giaitrinh.config import PROCESSES_DIR  # noqa: E402
from giaitrinh.engine import calendar as cal  # noqa: E402
from giaitrinh.engine import clock, db, definitions, forms, runtime  # noqa: E402
from giaitrinh.engine.models import Base, Request  # noqa: E402
from giaitrinh.engine.services import _common, requests, tasks  # noqa: E402

# Friday 20 November 2026, 09:00 in Hà Nội, as in the tests: no holiday nearby.
START = datetime.fromisoformat("2026-11-20T09:00:00+07:00")

EXPLANATION = {"legal_basis": "Luật Đất đai 2024, Điều 79",
               "content": "Ông Nguyễn Văn An (0912 345 678) đã được thông báo thu hồi đất đúng trình tự."}

# (step, demo user who does it, form data): every human step of the happy path.
STEPS = [
    ("receive", "tiepnhan", {"decision": "accept"}),
    ("assign", "lanhdao", {"assignee": "chuyenvien"}),
    ("explain", "chuyenvien", {"explanation": EXPLANATION}),
    ("approve", "lanhdao", {"approved": True}),
    ("publish", "tiepnhan", {"publish": True}),
]


def citizen(i: int) -> dict:
    return {
        "requester": {"name": "Nguyễn Văn An", "address": f"Số {i + 1} Trần Phú, phường Mỹ Xuyên",
                      "phone": "0912 345 678", "email": f"an{i}@example.vn", "kind": "person"},
        "subject": "Giải trình về việc thu hồi đất tại tổ dân phố 3",
        "content": "Đề nghị giải trình căn cứ pháp lý của quyết định thu hồi đất thửa số 125.",
        "unit": "MX",
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def interpreter() -> str:
    """Which Python ran: its version and executable (Debian's /usr/bin/python3.11, built with
    profile-guided and link-time optimisation, runs this lifecycle about a sixth faster than a
    pyenv build of the same version)."""
    import platform

    return f"{platform.python_version()} {os.path.realpath(getattr(sys, '_base_executable', sys.executable))}"


def peak_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# -- 1. the engine on a database ---------------------------------------------------------


def bench_engine(url: str, n: int) -> dict:
    previous = clock.get_clock()
    clock.set_clock(clock.FixedClock(START))
    engine = db.init_db(url)
    try:
        Base.metadata.create_all(engine)
        cal.invalidate_cache()
        demo._setup_accounts()
        demo._deploy()
        people = {user: demo._actor(user) for _, user, _ in STEPS}
        # A running server parses each definition once; keep that out of the first latency.
        with db.read_only() as session:
            runtime.spec_for(_common.deployed_definition(session))
        server.settle_heap()  # as giaitrinh serve does once it is up

        submit_ms, complete_ms, codes = [], [], []
        started, cpu_started = time.perf_counter(), time.process_time()
        with click.progressbar(length=n, label="engine + database", file=sys.stderr) as bar:
            for i in range(n):
                t = time.perf_counter()
                code = requests.submit(citizen(i))["code"]
                submit_ms.append((time.perf_counter() - t) * 1000)
                codes.append(code)
                for step, user, data in STEPS:
                    actor = people[user]
                    # Found through the inbox, as an official would.
                    items = tasks.list_tasks(actor, scope="unit", request_code=code, step=step)["items"]
                    if not items:
                        raise RuntimeError(f"{code}: no open {step} task")
                    t = time.perf_counter()
                    tasks.complete(items[0]["id"], data, actor)
                    complete_ms.append((time.perf_counter() - t) * 1000)
                bar.update(1)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started

        with db.read_only() as session:
            published = session.execute(
                select(func.count()).select_from(Request)
                .where(Request.code.in_(codes), Request.status == "published", Request.closed.is_(True))
            ).scalar_one()
        if published != n:
            raise RuntimeError(f"only {published} of {n} requests ended published")
        return {
            "database": engine.dialect.name,
            "sqlite_wall_s": wall,
            "sqlite_lifecycles_per_s": n / wall,
            # Process CPU time per lifecycle: what a busy shared machine distorts least.
            "cpu_ms_per_lifecycle": cpu * 1000 / n,
            "sqlite_completions_per_s": len(complete_ms) / (sum(complete_ms) / 1000),
            "complete_p50_ms": percentile(complete_ms, 50),
            "complete_p95_ms": percentile(complete_ms, 95),
            "complete_max_ms": max(complete_ms),
            "submit_p50_ms": percentile(submit_ms, 50),
            "submit_p95_ms": percentile(submit_ms, 95),
            "submit_max_ms": max(submit_ms),
            "sqlite_published": published,
        }
    finally:
        clock.set_clock(previous)
        engine.dispose()


# -- 2. and 3. SpiffWorkflow alone, no database ----------------------------------------------------


def spiff_definition() -> SimpleNamespace:
    """The lifecycle parsed once, standing in for a definition row (what runtime needs of one)."""
    xml = (PROCESSES_DIR / "giai_trinh.bpmn").read_bytes()
    parsed = definitions.parse_definition(xml, forms_dir=PROCESSES_DIR / "forms")
    # Its own cache key, so this phase parses the spec itself and shares nothing with phase 1.
    definition = SimpleNamespace(sha256=f"bench:{parsed.sha256}", bpmn_xml=xml, manifest=parsed.manifest)
    runtime.spec_for(definition)
    return definition


def bench_spiff(definition: SimpleNamespace, n: int, roundtrip: bool) -> float:
    calendar = cal.WorkingCalendar()
    manifest = definition.manifest
    steps = []
    for step, _, data in STEPS:
        schema = manifest["forms"][manifest["tasks"][step]["form"]]
        # The engine fills absent fields before running, so gateways see the same data here.
        steps.append((step, tasks._fill_defaults(schema, data), forms.field_names(schema)))
    label = "spiff + serializer" if roundtrip else "spiff in memory"
    started = time.perf_counter()
    with click.progressbar(length=n, label=label, file=sys.stderr) as bar:
        for i in range(n):
            data = {"periods": manifest["periods"], "deadlines": {}, "extensions_used": 0,
                    "request": {"code": f"BENCH-{i}", "unit": "MX"}}
            running = runtime.start(definition, data, calendar)
            state = runtime.dump(running) if roundtrip else None
            for step, filled, fields in steps:
                if roundtrip:
                    running = runtime.load(definition, state, calendar)
                ready = [t for t in runtime.ready_human_tasks(running.workflow) if t.task_spec.bpmn_id == step]
                if not ready:
                    raise RuntimeError(f"workflow {i}: {step} is not ready")
                runtime.complete_human_task(running, str(ready[0].id), filled, fields)
                if roundtrip:
                    state = runtime.dump(running)
            status, _, _ = runtime.current_position(running)
            if status != "published" or not runtime.is_completed(running):
                raise RuntimeError(f"workflow {i} ended {status}, not published")
            bar.update(1)
    return n / (time.perf_counter() - started)


def bench_plain_spiff(manifest: dict, n: int, roundtrip: bool) -> float:
    """Phase 2: the lifecycle as a user of SpiffWorkflow alone would run it, nothing of the engine's
    runtime on the way (its date functions aside, which the diagram's scripts call)."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.spiff.parser import SpiffBpmnParser
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(PROCESSES_DIR / "giai_trinh.bpmn"))
    spec = parser.get_spec(manifest["process_id"])
    subprocess_specs = parser.get_subprocess_specs(manifest["process_id"])
    script_engine = PythonScriptEngine(environment=TaskDataEnvironment(runtime.script_functions(cal.WorkingCalendar())))
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
    steps = []
    for step, _, data in STEPS:
        schema = manifest["forms"][manifest["tasks"][step]["form"]]
        steps.append((step, tasks._fill_defaults(schema, data)))
    label = "plain spiff + its serializer" if roundtrip else "plain spiff in memory"
    with click.progressbar(length=n, label=label, file=sys.stderr) as bar:
        # One lifecycle first, untimed: its scripts compiled and caches warm, as the engine's
        # phase parses its spec before it starts the clock.
        for i in range(-1, n):
            if i == 0:
                started = time.perf_counter()
            workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine)
            workflow.get_tasks(state=TaskState.READY)[0].data.update(
                {"periods": deepcopy(manifest["periods"]), "deadlines": {}, "extensions_used": 0,
                 "request": {"code": f"BENCH-{i}", "unit": "MX"}})
            workflow.do_engine_steps()
            state = serializer.serialize_json(workflow) if roundtrip else None
            for step, filled in steps:
                if roundtrip:
                    workflow = serializer.deserialize_json(state)
                    workflow.script_engine = script_engine
                ready = [t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                         if t.task_spec.bpmn_id == step]
                if not ready:
                    raise RuntimeError(f"plain workflow {i}: {step} is not ready")
                ready[0].data.update(deepcopy(filled))
                ready[0].run()
                workflow.do_engine_steps()
                workflow.refresh_timers()
                if roundtrip:
                    state = serializer.serialize_json(workflow)
            # The same test as the engine's (runtime.current_position): the element passed last
            # that the manifest maps to a status is the published end.
            ended = [t for t in workflow.get_tasks(state=TaskState.COMPLETED)
                     if t.task_spec.bpmn_id in manifest["statuses"] and not t.task_spec.manual]
            last = max(ended, key=lambda t: t.last_state_change) if ended else None
            if not workflow.is_completed() or last is None or manifest["statuses"][last.task_spec.bpmn_id] != "published":
                raise RuntimeError(f"plain workflow {i} did not end published")
            bar.update(1 if i >= 0 else 0)
    return n / (time.perf_counter() - started)


def spiff_rates(n: int) -> dict[str, float]:
    """Phases 2 and 3 in a process of their own, on SpiffWorkflow as shipped: the engine's changes to
    it (string task ids, log extras built only when written: engine/runtime.py) make SpiffWorkflow
    itself faster, and the reference is plain SpiffWorkflow."""
    env = dict(os.environ, GIAITRINH_SPIFF_AS_SHIPPED="1")
    done = subprocess.run([sys.executable, __file__, "--reference-only", "--n", str(n)], env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_reference(n: int) -> None:
    if not runtime.SPIFF_AS_SHIPPED or runtime.TASK_IDS_AS_STRINGS:
        raise click.UsageError("the reference runs with GIAITRINH_SPIFF_AS_SHIPPED=1")
    previous = clock.get_clock()
    clock.set_clock(clock.FixedClock(START))  # the same dates as the engine's run
    try:
        definition = spiff_definition()
        rates = {"plain_inmemory": bench_plain_spiff(definition.manifest, n, roundtrip=False),
                 "plain_serialized": bench_plain_spiff(definition.manifest, n, roundtrip=True)}
        rates["engine_inmemory"] = bench_spiff(definition, n, roundtrip=False)
        rates["engine_serialized"] = bench_spiff(definition, n, roundtrip=True)
    finally:
        clock.set_clock(previous)
    click.echo(json.dumps(rates))


# -- the run --------------------------------------------------------------------------------


def run(n: int, database_url: str | None = None) -> dict:
    if n < 1:
        raise ValueError("n must be at least 1")
    with tempfile.TemporaryDirectory(prefix="giaitrinh-bench-") as tmp:
        figures = {"n": n, **bench_engine(database_url or f"sqlite:///{Path(tmp) / 'bench.db'}", n)}
    rates = spiff_rates(n)
    engine_rate = figures["sqlite_lifecycles_per_s"]
    figures.update({
        # SpiffWorkflow on the engine's runtime (phase 3), under the names older runs printed.
        "spiff_inmemory_lifecycles_per_s": rates["engine_inmemory"],
        "spiff_serialized_lifecycles_per_s": rates["engine_serialized"],
        "ratio_inmemory_over_sqlite": rates["engine_inmemory"] / engine_rate,
        "ratio_serialized_over_sqlite": rates["engine_serialized"] / engine_rate,
        "ratio_to_engine_serializer": engine_rate / rates["engine_serialized"],
        "peak_rss_mb": peak_rss_mb(),
        "python": interpreter(),
        # The names the performance issue reads: plain SpiffWorkflow as shipped (phase 2), and
        # the engine's rate as a fraction of its rate with its own serializer's round-trip at
        # every step (the bar is 0.5).
        "bench": "lifecycle",
        "db": figures["database"],
        "lifecycles_per_s": engine_rate,
        "task_completions_per_s": figures["sqlite_completions_per_s"],
        "raw_spiff_per_s": rates["plain_inmemory"],
        "raw_spiff_serialized_per_s": rates["plain_serialized"],
        "ratio_to_serialized": engine_rate / rates["plain_serialized"],
    })
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def table(f: dict) -> str:
    rows = [
        (f"Engine on {f['database']} (persistence, projection, audit)", ""),
        ("  lifecycles/s (wall: submit, inbox, 5 completions)", f"{f['sqlite_lifecycles_per_s']:.1f}"),
        ("  task completions/s (time inside tasks.complete)", f"{f['sqlite_completions_per_s']:.1f}"),
        ("  completion latency p50 / p95 / max (ms)",
         f"{f['complete_p50_ms']:.1f} / {f['complete_p95_ms']:.1f} / {f['complete_max_ms']:.1f}"),
        ("  submission latency p50 / p95 / max (ms)",
         f"{f['submit_p50_ms']:.1f} / {f['submit_p95_ms']:.1f} / {f['submit_max_ms']:.1f}"),
        ("  requests ended published", f"{f['sqlite_published']} / {f['n']}"),
        ("Plain SpiffWorkflow as shipped", ""),
        ("  lifecycles/s in memory", f"{f['raw_spiff_per_s']:.1f}"),
        ("  lifecycles/s with its serializer's round-trip per step", f"{f['raw_spiff_serialized_per_s']:.1f}"),
        ("Engine rate / plain Spiff-with-serializer rate (ratio_to_serialized)", f"{f['ratio_to_serialized']:.2f}"),
        ("SpiffWorkflow on the engine's runtime, no database", ""),
        ("  lifecycles/s in memory", f"{f['spiff_inmemory_lifecycles_per_s']:.1f}"),
        ("  lifecycles/s with the engine's dump+load per step", f"{f['spiff_serialized_lifecycles_per_s']:.1f}"),
        ("Engine with persistence+audit vs that in memory", f"{f['ratio_inmemory_over_sqlite']:.1f}x slower"),
        ("Engine rate / that with round-trips (ratio_to_engine_serializer)",
         f"{f['ratio_to_engine_serializer']:.2f}"),
        ("Peak RSS (MB)", f"{f['peak_rss_mb']:.1f}"),
        ("Python", f["python"]),
    ]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{value:>20}" if value else label for label, value in rows)


@click.command()
@click.option("--n", default=200, show_default=True, help="Requests taken through the whole lifecycle.")
@click.option("--database-url", default=None, help="Database to run the engine on (default: a temporary SQLite file).")
@click.option("--reference-only", is_flag=True, hidden=True, help="Phase 2 alone (run by phase 1's process).")
def main(n: int, database_url: str | None, reference_only: bool) -> None:
    """Benchmark the request lifecycle: engine on a database vs SpiffWorkflow in memory."""
    if reference_only:
        run_reference(n)
        return
    figures = run(n, database_url)
    click.echo(f"\nLifecycle benchmark, N = {n}")
    click.echo(table(figures))
    click.echo(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
