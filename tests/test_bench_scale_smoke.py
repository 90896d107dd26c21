"""The city-scale benchmarks still run end to end: a tiny generated database, each script's last
line checked to be JSON with its figures and parameters (the figures themselves are only checked
for sense: speed is measured by running the scripts, not by tests)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .components import missing

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--closed", "60", "--open", "40", "--units", "3"]


def run_bench(script: str, args: list[str], cache: Path, timeout: int = 180) -> dict:
    env = dict(os.environ, GIAITRINH_BENCH_CACHE=str(cache))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cache, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


def test_dataset_is_generated_once_with_real_rows(cache):
    url = subprocess.run([sys.executable, str(ROOT / "bench" / "dataset.py"), *SMALL], capture_output=True,
                         text=True, timeout=180, cwd=cache, env=dict(os.environ, GIAITRINH_BENCH_CACHE=str(cache)),
                         check=True).stdout.strip().splitlines()[-1]
    engine = create_engine(url)
    with engine.connect() as conn:
        closed, open_ = conn.execute(text("SELECT sum(closed), sum(1 - closed) FROM requests")).one()
        states = conn.execute(text("SELECT count(*) FROM workflow_states")).scalar_one()
        orphans = conn.execute(text("SELECT count(*) FROM tasks t LEFT JOIN requests r ON r.id = t.request_id "
                                    "WHERE r.id IS NULL OR r.closed")).scalar_one()
        published = conn.execute(text("SELECT count(*), sum(search_text IS NULL) FROM requests "
                                      "WHERE published_at IS NOT NULL")).one()
        task_ids = [r[0] for r in conn.execute(text("SELECT id FROM tasks"))]
        own_state = conn.execute(text("SELECT count(*) FROM tasks t JOIN workflow_states w ON w.request_id = t.request_id "
                                      "WHERE instr(w.state, t.id) > 0")).scalar_one()
        # The supervisors' stuck facts say what the generated task and job rows say (engine/attention.py).
        wrong_facts = conn.execute(text(
            "SELECT count(*) FROM requests r WHERE r.task_due_at IS NOT (SELECT min(due_at) FROM tasks t "
            "WHERE t.request_id = r.id AND t.status = 'open') OR r.work_pending != (EXISTS (SELECT 1 FROM tasks t "
            "WHERE t.request_id = r.id AND t.status = 'open') OR EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id "
            "AND j.status IN ('waiting', 'paused', 'incident')) OR r.status = 'needs_info')")).scalar_one()
        dated = conn.execute(text("SELECT count(*) FROM requests WHERE task_due_at IS NOT NULL")).scalar_one()
    engine.dispose()
    assert (closed, open_) == (60, 40) and states == 40 and orphans == 0
    assert published[0] > 0 and published[1] == 0
    assert len(set(task_ids)) == len(task_ids) and own_state == len(task_ids)  # each task is in its own workflow
    assert wrong_facts == 0 and dated > 0


def test_inbox_benchmark(cache):
    figures = run_bench("inbox.py", [*SMALL, "--calls", "5"], cache)
    assert figures["bench"] == "inbox" and figures["db"] == "sqlite"
    assert (figures["closed"], figures["open"], figures["units"], figures["calls"]) == (60, 40, 3, 5)
    for name in ("inbox_mine", "inbox_unit", "dashboard_unit", "dashboard_city", "board_unit", "board_city", "search"):
        assert 0 < figures[f"{name}_p50_ms"] <= figures[f"{name}_p95_ms"] <= figures[f"{name}_max_ms"], name


def test_timer_scale_benchmark(cache):
    figures = run_bench("timers_scale.py", ["--open", "40", "--burst", "10", "--realtime", "5", "--spread", "1",
                                            "--wakeups", "5"], cache)
    assert figures["bench"] == "timers_scale" and figures["db"] == "sqlite" and figures["waiting"] > 10
    assert figures["burst"] == figures["burst_fired"] == 10 and figures["burst_timers_per_s"] > 0
    assert 0 < figures["idle_wakeup_p50_ms"] <= figures["idle_wakeup_p95_ms"]
    assert figures["realtime"] == 5 and 0 <= figures["lateness_p50_ms"] <= figures["lateness_p99_ms"] < 60_000


def test_memory_benchmark(cache):
    figures = run_bench("memory.py", [*SMALL, "--workers", "2", "--touches", "1", "--settle", "0.2"], cache)
    assert figures["bench"] == "memory" and figures["open_instances"] == 40 and figures["workers"] == 2
    assert figures["processes"] == 3 and figures["calls"] > 0  # gunicorn's master and two workers
    assert 0 < figures["largest_process_rss_mb"] < figures["rss_mb"] and 0 < figures["pss_mb"] <= figures["rss_mb"]


def test_http_benchmark(cache):
    if shutil.which("wrk") is None:  # `make test` installs it
        missing("wrk is not installed (make tools: apt-get install wrk)")
    figures = run_bench("http_load.py", [*SMALL, "--duration", "1", "--connections", "2", "--threads-wrk", "1"], cache)
    assert figures["bench"] == "http" and figures["workers"] == 2
    for name in ("home", "published_page", "published_api", "inbox_page", "tasks_api", "dashboard_page"):
        assert figures[f"{name}_rps"] > 0 and figures[f"{name}_non_2xx"] == 0, name
        assert 0 < figures[f"{name}_p50_ms"] <= figures[f"{name}_p95_ms"], name
