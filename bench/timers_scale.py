"""The scheduler with a city's worth of waiting timers: an idle wake-up, a burst of due timers,
and lateness in real time, with (by default) about 100,000 timers waiting.

The database comes from ``bench/dataset.py`` (no closed requests, ``--open`` open ones, each
with the waiting jobs its template has: about 0.8 a request) and is copied for each run, so the
cached one is never changed. Three measurements, on that copy:

1. Idle wake-up: every waiting timer due in the future, the scheduler's sweep as
   ``giaitrinh serve`` runs it (claim what is due, find nothing; look up the next due time),
   timed over many wake-ups. Reported p50 / p95 in milliseconds.
2. Burst: ``--burst`` of the waiting timers made due at once, fired by one process with
   ``timers.run_due`` (what a scheduler's sweep does, and ``giaitrinh timers run-due``).
   Reported: seconds to fire them all and timers per second; the run fails unless each of
   them fired exactly once (one ``timer_fired`` event per job) and none of the others did.
3. Lateness in real time: ``--realtime`` timers re-armed at real instants spread over
   ``--spread`` seconds, the others still waiting; the scheduler thread of ``giaitrinh serve``
   fires them. Reported: lateness (fired - due) p50 / p99 / max.

Progress goes to stderr; the last line of stdout is one JSON object with every figure.

    python bench/timers_scale.py [--open 130000] [--burst 10000] [--realtime 2000] [--spread 20]
                                 [--database-url URL]
"""
from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import click  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import dataset  # noqa: E402
from giaitrinh import server  # noqa: E402
from giaitrinh.engine import calendar as cal  # noqa: E402
from giaitrinh.engine import db, timers  # noqa: E402

UNITS = 100


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Copy:
    """A throw-away copy of the cached database (a file copy, or a PostgreSQL template copy)."""

    def __init__(self, source_url: str):
        self.source = source_url
        self.tmp = None
        if source_url.startswith("sqlite"):
            self.tmp = tempfile.TemporaryDirectory(prefix="giaitrinh-timers-")
            target = Path(self.tmp.name) / "timers.db"
            source = make_url(source_url).database
            with sqlite3.connect(source) as conn:  # whatever is still in the write-ahead log goes into the file
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(source, target)
            self.url = f"sqlite:///{target}"
        else:
            parsed = make_url(source_url)
            self.name = f"giaitrinh_bench_timers_{uuid.uuid4().hex[:8]}"
            self._admin(f'CREATE DATABASE "{self.name}" TEMPLATE "{parsed.database}"')
            self.url = parsed.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        admin = create_engine(make_url(self.source).set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(sql))
        finally:
            admin.dispose()

    def drop(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def execute(sql: str, **params):
    with db.get_engine().begin() as conn:
        result = conn.execute(text(sql), params)
        return result.all() if result.returns_rows else None


def naive(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)  # how UtcDateTime stores it


def waiting_ids() -> list[int]:
    return [r[0] for r in execute("SELECT id FROM jobs WHERE status = 'waiting' ORDER BY id")]


def waiting_timer_ids() -> list[int]:
    """BPMN timers (escalation reminders fire only while the case is still late)."""
    return [r[0] for r in execute("SELECT id FROM jobs WHERE status = 'waiting' AND kind = 'timer' ORDER BY id")]


def last_event() -> int:
    return execute("SELECT coalesce(max(id), 0) FROM audit_events")[0][0]


def arm(ids: list[int], first: datetime, step_s: float) -> None:
    """Make these jobs due at first, first + step, ... (and the others far in the future)."""
    with db.get_engine().begin() as conn:
        conn.execute(text("UPDATE jobs SET due_at = :later WHERE status = 'waiting'"),
                     {"later": naive(datetime.now(timezone.utc) + timedelta(days=60))})
        if ids:
            conn.execute(text("UPDATE jobs SET due_at = :due WHERE id = :id"),
                         [{"id": job_id, "due": naive(first + timedelta(seconds=i * step_s))}
                          for i, job_id in enumerate(ids)])


def idle_wakeups(wakeups: int) -> dict:
    """What one sweep of an idle scheduler does: claim nothing, then find the next due time."""
    times = []
    for _ in range(5):
        timers.run_due()
        timers.next_due()
    for _ in range(wakeups):
        t = time.perf_counter()
        timers.run_due()
        timers.next_due()
        times.append((time.perf_counter() - t) * 1000)
    return {"idle_wakeup_p50_ms": percentile(times, 50), "idle_wakeup_p95_ms": percentile(times, 95),
            "idle_wakeup_max_ms": max(times)}


def fired_events(ids: list[int], since: int) -> dict[int, int]:
    rows = execute("SELECT after FROM audit_events WHERE action = 'timer_fired' AND id > :since", since=since)
    counts: dict[int, int] = {}
    for (after,) in rows:
        job = (json.loads(after) if isinstance(after, str) else after)["job"]
        counts[job] = counts.get(job, 0) + 1
    wanted = set(ids)
    stray = [j for j in counts if j not in wanted]
    twice = [j for j in wanted if counts.get(j, 0) > 1]
    missing = [j for j in wanted if counts.get(j, 0) == 0]
    if stray or twice or missing:
        raise RuntimeError(f"{len(missing)} due timers not fired, {len(twice)} fired twice, "
                           f"{len(stray)} fired though not due")
    return counts


def burst(ids: list[int]) -> dict:
    arm(ids, datetime.now(timezone.utc) - timedelta(minutes=1), 0)
    since = last_event()
    started = time.perf_counter()
    fired = timers.run_due()
    elapsed = time.perf_counter() - started
    fired_events(ids, since)
    return {"burst": len(ids), "burst_fired": fired, "burst_s": elapsed, "burst_timers_per_s": len(ids) / elapsed}


def lateness(ids: list[int], spread: float) -> dict:
    lead = 3.0
    first = datetime.now(timezone.utc) + timedelta(seconds=lead)
    arm(ids, first, spread / max(1, len(ids)))
    since = last_event()
    timers.start_scheduler()
    deadline = time.monotonic() + lead + spread + 60
    fired = 0
    placeholders = ",".join(str(i) for i in ids)
    try:
        with click.progressbar(length=len(ids), label="real-time firing", file=sys.stderr) as bar:
            while time.monotonic() < deadline:
                [(count,)] = execute(f"SELECT count(*) FROM jobs WHERE fired_at IS NOT NULL AND id IN ({placeholders})")
                bar.update(count - fired)
                fired = count
                if fired >= len(ids):
                    break
                time.sleep(0.5)
    finally:
        timers.stop_scheduler()
    rows = execute(f"SELECT due_at, fired_at FROM jobs WHERE fired_at IS NOT NULL AND id IN ({placeholders})")
    if len(rows) != len(ids):
        raise RuntimeError(f"only {len(rows)} of {len(ids)} real-time timers fired")
    fired_events(ids, since)

    def moment(value):
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    late = [(moment(f) - moment(d)).total_seconds() * 1000 for d, f in rows]
    return {"realtime": len(ids), "spread_s": spread, "lateness_p50_ms": percentile(late, 50),
            "lateness_p99_ms": percentile(late, 99), "lateness_max_ms": max(late)}


def run(open_: int, burst_n: int, realtime_n: int, spread: float, wakeups: int, database_url: str | None) -> dict:
    source = dataset.ensure(0, open_, UNITS, database_url)
    figures: dict = {"bench": "timers_scale", "open": open_, "units": UNITS}
    for phase in ("idle", "burst", "realtime"):
        copy = Copy(source)
        try:
            engine = db.init_db(copy.url)
            cal.invalidate_cache()
            server.settle_heap()  # the scheduler runs in giaitrinh serve, which does this once it is up
            figures["db"] = engine.dialect.name
            figures["waiting"] = len(waiting_ids())
            ids = waiting_timer_ids()
            if phase == "idle":
                arm([], datetime.now(timezone.utc), 0)
                click.echo(f"idle wake-ups with {figures['waiting']} timers waiting...", err=True)
                figures.update(idle_wakeups(wakeups))
                figures["wakeups"] = wakeups
            elif phase == "burst":
                chosen = ids[:: max(1, len(ids) // burst_n)][:burst_n]
                click.echo(f"firing {len(chosen)} due timers of {figures['waiting']} waiting...", err=True)
                figures.update(burst(chosen))
            else:
                chosen = ids[:: max(1, len(ids) // realtime_n)][:realtime_n]
                figures.update(lateness(chosen, spread))
            engine.dispose()
        finally:
            copy.drop()
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}


@click.command()
@click.option("--open", "open_", default=130_000, show_default=True,
              help="Open requests in the generated database (about 0.8 waiting timers each).")
@click.option("--burst", "burst_n", default=10_000, show_default=True, help="Timers that fall due at once.")
@click.option("--realtime", "realtime_n", default=2000, show_default=True, help="Timers fired in real time.")
@click.option("--spread", default=20.0, show_default=True, help="Seconds over which those fall due.")
@click.option("--wakeups", default=200, show_default=True, help="Idle wake-ups timed.")
@click.option("--database-url", default=None,
              help="Default: a cached SQLite file under instance/bench/; a PostgreSQL URL is created if missing.")
def main(open_: int, burst_n: int, realtime_n: int, spread: float, wakeups: int, database_url: str | None) -> None:
    """Idle wake-up cost, a burst of due timers and real-time lateness with ~100,000 waiting."""
    f = run(open_, burst_n, realtime_n, spread, wakeups, database_url)
    click.echo(f"\nTimers on {f['db']}, {f['waiting']:,} waiting")
    click.echo(f"  idle wake-up            p50 {f['idle_wakeup_p50_ms']:.2f} ms, p95 {f['idle_wakeup_p95_ms']:.2f} ms")
    click.echo(f"  {f['burst']:,} due at once        fired in {f['burst_s']:.1f} s ({f['burst_timers_per_s']:.0f}/s)")
    click.echo(f"  lateness, {f['realtime']} over {f['spread_s']:.0f} s  p50 {f['lateness_p50_ms']:.0f} ms, "
               f"p99 {f['lateness_p99_ms']:.0f} ms, max {f['lateness_max_ms']:.0f} ms")
    click.echo(json.dumps(f, sort_keys=True))


if __name__ == "__main__":
    main()
