"""How fast the supervisors' lists answer on a database with many cases.

Creates N requests through the real services on a fresh SQLite file (or ``--database-url``):
a third accepted and assigned, the clock then moved so that many are overdue, some escalated
and some idle for more than N working days. Then times, each ``--repeat`` times: the instance
list with stuck reasons (first page, every row's reasons computed in the same SQL), the stuck
filter, the per-unit dashboard and the heatmap. Prints one line per figure and, last, one JSON
object (keys ``bench``, ``n``, ``list_ms_p50``, ``stuck_ms_p50``, ``dashboard_ms_p50``,
``heatmap_ms_p50``, ``stuck_total``).

    python bench/supervision.py [--n 2000] [--repeat 20] [--database-url URL]
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from giaitrinh import demo  # noqa: E402
from giaitrinh.engine import calendar as cal  # noqa: E402
from giaitrinh.engine import clock, db, timers  # noqa: E402
from giaitrinh.engine.models import Base  # noqa: E402
from giaitrinh.engine.services import requests, supervision, tasks  # noqa: E402

START = datetime.fromisoformat("2026-11-02T09:00:00+07:00")


def _timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


@click.command()
@click.option("--n", default=2000, show_default=True)
@click.option("--repeat", default=20, show_default=True)
@click.option("--database-url", default=None)
def main(n: int, repeat: int, database_url: str | None) -> None:
    tmp = tempfile.TemporaryDirectory()
    url = database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = db.init_db(url)
    Base.metadata.create_all(engine)
    cal.invalidate_cache()
    fixed = clock.FixedClock(START)
    clock.set_clock(fixed)
    demo._setup_accounts()  # noqa: SLF001
    demo._deploy()  # noqa: SLF001
    people = {u: demo._actor(u) for u, _, _ in demo.USERS}  # noqa: SLF001
    payload = {"requester": {"name": "Nguyễn Văn An", "address": "12 Trần Phú", "phone": "0912345678"},
               "subject": "Giải trình về việc thu hồi đất", "content": "Đề nghị giải trình căn cứ pháp lý.",
               "unit": "MX"}
    t0 = time.perf_counter()
    for i in range(n):
        code = requests.submit(payload)["code"]
        if i % 3 == 0:
            task = tasks.list_tasks(people["tiepnhan"], scope="unit", request_code=code)["items"][0]["id"]
            tasks.complete(task, {"decision": "accept"}, people["tiepnhan"])
            task = tasks.list_tasks(people["lanhdao"], scope="unit", request_code=code)["items"][0]["id"]
            tasks.complete(task, {"assignee": "chuyenvien"}, people["lanhdao"])
        if i % 50 == 0:
            fixed.advance(hours=6)
        if i % 500 == 0:
            print(f"created {i}/{n}", file=sys.stderr)
    print(f"created {n} requests in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    fixed.set(fixed.now() + timedelta(days=12))
    fired = timers.run_due()
    boss = people["thanhtra"]
    figures = {
        "bench": "supervision", "db": engine.dialect.name, "n": n, "timers_fired": fired,
        "list_ms_p50": round(_timed(lambda: supervision.list_instances(boss, per_page=50), repeat), 2),
        "stuck_ms_p50": round(_timed(lambda: supervision.list_instances(boss, stuck=True, per_page=50), repeat), 2),
        "dashboard_ms_p50": round(_timed(lambda: supervision.dashboard(boss), repeat), 2),
        "heatmap_ms_p50": round(_timed(lambda: supervision.heatmap(boss), repeat), 2),
        "stuck_total": supervision.list_instances(boss, stuck=True, per_page=1)["total"],
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))
    engine.dispose()


if __name__ == "__main__":
    main()
