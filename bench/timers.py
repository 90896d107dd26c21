"""How fast, and how late, the timer schedulers fire deadlines when several processes share
one PostgreSQL database.

Two measurements on databases the benchmark creates and drops itself:

1. Throughput. N requests are submitted (each waits on its acknowledgement timer) into
   a template database. For each worker count K (default 1, 2, 4) a copy of it gets a
   shared dev clock two working weeks later, so all N timers are due at once, and K
   ``giaitrinh timers run-due`` processes race to fire them. Reported: timers fired per
   second over the firing window (first to last fire) and over the wall time including
   process start-up; every run is checked to fire each timer exactly once.
2. Lateness in real-time mode. A copy with the real clock gets its N timers re-armed at
   real instants spread over ``--spread`` seconds starting a few seconds ahead; K
   processes run the scheduler exactly as ``giaitrinh serve`` does (sleep until the next
   due job, claim, fire). Reported: lateness (fired - due) p50 / p99 / max.

Progress goes to stderr; the last line of stdout is one JSON object with every figure.

    python bench/timers.py [--n 2000] [--workers 1,2,4] [--realtime-workers 2] [--spread 20]
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from giaitrinh import demo, migrate  # noqa: E402
from giaitrinh.engine import calendar as cal  # noqa: E402
from giaitrinh.engine import clock, db  # noqa: E402
from giaitrinh.engine.services import requests  # noqa: E402

START = datetime.fromisoformat("2026-11-20T09:00:00+07:00")
AFTER_DEADLINES = datetime.fromisoformat("2026-12-04T09:00:00+07:00")
CITIZEN = {
    "requester": {"name": "Nguyễn Văn An", "address": "12 Trần Phú, phường Mỹ Xuyên", "phone": "0912 345 678",
                  "kind": "person"},
    "content": "Đề nghị giải trình căn cứ pháp lý của quyết định thu hồi đất thửa số 125.",
    "unit": "MX",
}

# The scheduler of `giaitrinh serve`, without the web server, in a process of its own.
SCHEDULER = """
import sys, time
from giaitrinh.boot import boot
from giaitrinh.engine import timers
boot()
timers.start_scheduler()
time.sleep(float(sys.argv[1]))
timers.stop_scheduler()
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Server:
    """Databases on the PostgreSQL server, made and dropped by the benchmark."""

    def __init__(self, admin_dsn: str):
        self.admin_dsn = admin_dsn
        self.params = dict(part.split("=", 1) for part in admin_dsn.split())
        self.made: list[str] = []

    def _admin(self):
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def url(self, name: str) -> str:
        p = self.params
        return f"postgresql+psycopg://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{name}"

    def create(self, template: str | None = None) -> str:
        name = f"giaitrinh_bench_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.made.append(name)
        return name

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in reversed(self.made):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_template(server: Server, n: int) -> str:
    name = server.create()
    url = server.url(name)
    migrate.upgrade(url)
    engine = db.init_db(url)
    previous = clock.get_clock()
    clock.set_clock(clock.FixedClock(START))
    cal.invalidate_cache()
    try:
        demo._setup_accounts()  # noqa: SLF001
        demo._deploy()  # noqa: SLF001
        with click.progressbar(range(n), label=f"submitting {n} requests", file=sys.stderr) as bar:
            for i in bar:
                requests.submit(dict(CITIZEN, subject=f"Yêu cầu số {i}"))
    finally:
        clock.set_clock(previous)
        engine.dispose()  # a template must have no open connection when it is copied
    return name


def query(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return result.all() if result.returns_rows else None
    finally:
        engine.dispose()


def env_for(url: str, **extra) -> dict:
    env = dict(os.environ, DATABASE_URL=url, GIAITRINH_SECRET_KEY="bench", PYTHONPATH=str(ROOT),
               GIAITRINH_INSTANCE=str(Path(os.environ.get("TMPDIR", "/tmp")) / "giaitrinh-bench-instance"))
    env.pop("GIAITRINH_CLOCK_START", None)
    env.pop("GIAITRINH_DEV_CLOCK", None)
    env.update(extra)
    return env


def check_exactly_once(url: str, n: int) -> None:
    [(events, jobs)] = query(url, "SELECT count(*), count(DISTINCT (after::jsonb)->>'job') FROM audit_events "
                                  "WHERE action = 'timer_fired'")
    if events != n or jobs != n:
        raise RuntimeError(f"expected {n} timers fired once each, saw {events} firings of {jobs} jobs")


def throughput(server: Server, template: str, n: int, workers: int) -> dict:
    url = server.url(server.create(template))
    offset = (AFTER_DEADLINES - datetime.now(timezone.utc)).total_seconds()
    query(url, "INSERT INTO settings (key, value) VALUES ('dev_clock_offset_seconds', :v)", v=repr(offset))
    env = env_for(url, GIAITRINH_DEV_CLOCK="1")
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "giaitrinh.cli", "timers", "run-due"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    for p, (_, err) in zip(procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed: {err[-1000:]}")
    check_exactly_once(url, n)
    [(first, last)] = query(url, "SELECT min(fired_at), max(fired_at) FROM jobs WHERE kind = 'timer'")
    window = (last - first).total_seconds()
    return {"workers": workers, "timers_per_s": n / window if window else float("inf"),
            "timers_per_s_incl_startup": n / wall, "window_s": window, "wall_s": wall}


def lateness(server: Server, template: str, n: int, workers: int, spread: float) -> dict:
    url = server.url(server.create(template))
    lead = 5.0  # seconds for the scheduler processes to start before the first timer falls due
    first_due = datetime.now(timezone.utc) + timedelta(seconds=lead)
    # Re-arm the waiting timers at real instants (the jobs table is what the schedulers act on).
    query(url, "UPDATE jobs SET due_at = :first + make_interval(secs => (id - (SELECT min(id) FROM jobs)) * :step) "
               "WHERE kind = 'timer' AND status = 'waiting'",
          first=first_due.replace(tzinfo=None), step=spread / n)
    env = env_for(url)
    run_for = lead + spread + 30
    procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER, str(run_for)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    deadline = time.monotonic() + run_for
    fired = 0
    with click.progressbar(length=n, label=f"real-time firing, {workers} schedulers", file=sys.stderr) as bar:
        while time.monotonic() < deadline:
            [(count,)] = query(url, "SELECT count(*) FROM jobs WHERE kind = 'timer' AND fired_at IS NOT NULL")
            bar.update(count - fired)
            fired = count
            if fired >= n:
                break
            time.sleep(0.5)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)
    check_exactly_once(url, n)
    late = [row[0] for row in query(url, "SELECT EXTRACT(EPOCH FROM fired_at - due_at) FROM jobs "
                                         "WHERE kind = 'timer' AND fired_at IS NOT NULL")]
    late = [float(x) for x in late]
    return {"lateness_workers": workers, "lateness_n": n, "lateness_spread_s": spread,
            "lateness_p50_ms": percentile(late, 50) * 1000, "lateness_p99_ms": percentile(late, 99) * 1000,
            "lateness_max_ms": max(late) * 1000}


@click.command()
@click.option("--n", default=2000, show_default=True, help="Timers per run (due at once; then spread in real time).")
@click.option("--workers", default="1,2,4", show_default=True, help="Worker counts to compare.")
@click.option("--realtime-workers", default=2, show_default=True)
@click.option("--spread", default=20.0, show_default=True, help="Seconds over which the lateness timers fall due.")
@click.option("--admin-dsn", default=os.environ.get("GIAITRINH_BENCH_PG",
                                                    "host=127.0.0.1 port=5432 user=postgres dbname=postgres"),
              show_default=True, help="libpq DSN of a role that may create databases.")
def main(n: int, workers: str, realtime_workers: int, spread: float, admin_dsn: str) -> None:
    """Timers fired per second with 1, 2, 4 workers, and lateness in real time, on PostgreSQL."""
    counts = [int(w) for w in workers.split(",") if w.strip()]
    server = Server(admin_dsn)
    figures: dict = {"bench": "timers", "db": "postgresql", "n": n}
    try:
        template = build_template(server, n)
        for k in counts:
            click.echo(f"firing {n} due timers with {k} worker(s)...", err=True)
            result = throughput(server, template, n, k)
            figures[f"timers_per_s_{k}w"] = round(result["timers_per_s"], 1)
            figures[f"timers_per_s_incl_startup_{k}w"] = round(result["timers_per_s_incl_startup"], 1)
        result = lateness(server, template, n, realtime_workers, spread)
        figures.update({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()})
    finally:
        server.drop_all()
    click.echo(f"\nTimer benchmark on PostgreSQL, {n} due timers")
    for k in counts:
        click.echo(f"  {k} worker(s): {figures[f'timers_per_s_{k}w']:>8.1f} timers/s "
                   f"({figures[f'timers_per_s_incl_startup_{k}w']:.1f}/s including process start-up)")
    click.echo(f"  lateness with {realtime_workers} schedulers, {n} timers over {spread:.0f} s: "
               f"p50 {figures['lateness_p50_ms']:.0f} ms, p99 {figures['lateness_p99_ms']:.0f} ms, "
               f"max {figures['lateness_max_ms']:.0f} ms")
    click.echo(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
