"""Resident memory of ``giaitrinh serve`` with (by default) 100,000 open instances.

The database comes from ``bench/dataset.py`` (cached): every open request has its real
``workflow_states`` row (a serialized SpiffWorkflow instance of its stage), its open tasks
and its waiting timers. The server runs with production settings (gunicorn, ``--workers``,
each worker with its scheduler, which looks at the 100,000 waiting timers). Then the pages
and API calls officials and supervisors use are each called ``--touches`` times (inboxes of
several units, the dashboard, the instance and escalation lists, the public search), and the
resident size of the whole process tree is read from ``/proc``: RSS summed over the master
and workers (counting shared pages once per process, the pessimistic figure), PSS (shared
pages divided among the processes sharing them) and the largest single process.

The last line of stdout is one JSON object with every figure.

    python bench/memory.py [--closed 1000000] [--open 100000] [--units 100] [--workers 2]
                           [--database-url URL]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import click  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

import dataset  # noqa: E402
from inbox import SEARCHES  # noqa: E402
from served import Served  # noqa: E402


def open_instances(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM requests r JOIN workflow_states w "
                                     "ON w.request_id = r.id WHERE NOT r.closed")).scalar_one()
    finally:
        engine.dispose()


def touch(server: Served, units: list[str], touches: int) -> int:
    """Every list page and API call of officials and supervisors, ``touches`` times each."""
    some = units[:: max(1, len(units) // 8)][:8]
    calls = []
    for u in some:
        calls.append(("/cong-viec/", {"Cookie": server.session_cookie(f"cv_{u}_1")}))
        calls.append(("/giam-sat/", {"Cookie": server.session_cookie(f"tt_{u}")}))
        bearer = {"Authorization": "Bearer " + server.token(f"ld_{u}")}
        calls.append(("/api/v1/tasks?scope=unit", bearer))
        calls.append(("/api/v1/tasks?scope=mine", bearer))
    city = {"Authorization": "Bearer " + server.token("tt_city")}
    calls += [("/api/v1/instances?overdue=true", city), ("/api/v1/escalations?open=true", city),
              ("/api/v1/instances?stuck=true", city)]
    calls += [(f"/api/v1/published?q={quote(q)}", {}) for q in SEARCHES[:5]]
    calls += [("/", {}), ("/cong-khai", {})]
    made = 0
    for i in range(touches):
        for path, headers in calls:
            status, body = server.get(path + ("&" if "?" in path else "?") + f"page={1 + i % 3}", headers)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
            made += 1
    return made


def run(closed: int, open_: int, units: int, workers: int, touches: int, settle: float,
        database_url: str | None) -> dict:
    url = dataset.ensure(closed, open_, units, database_url)
    figures: dict = {"bench": "memory", "closed": closed, "open": open_, "units": units, "workers": workers,
                     "db": "sqlite" if url.startswith("sqlite") else "postgresql",
                     "open_instances": open_instances(url)}
    with Served(url, workers=workers) as server:
        time.sleep(settle)  # the schedulers' first sweeps over the waiting timers
        figures.update({f"idle_{k}": v for k, v in server.memory().items()})
        figures["calls"] = touch(server, dataset.unit_codes(units), touches)
        time.sleep(settle)
        figures.update(server.memory())
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}


@click.command()
@click.option("--closed", default=1_000_000, show_default=True)
@click.option("--open", "open_", default=100_000, show_default=True)
@click.option("--units", default=100, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--touches", default=5, show_default=True, help="Rounds over every list page and API call.")
@click.option("--settle", default=3.0, show_default=True, help="Seconds to wait before each reading.")
@click.option("--database-url", default=None,
              help="Default: a cached SQLite file under instance/bench/; a PostgreSQL URL is created if missing.")
def main(closed, open_, units, workers, touches, settle, database_url) -> None:
    """RSS of giaitrinh serve (master and workers) on a database with 100,000 open instances."""
    f = run(closed, open_, units, workers, touches, settle, database_url)
    click.echo(f"\nMemory of giaitrinh serve ({workers} workers, {f['db']}), {f['open_instances']:,} open instances")
    click.echo(f"  after start-up   RSS {f['idle_rss_mb']:.0f} MB (PSS {f['idle_pss_mb']:.0f} MB)")
    click.echo(f"  after {f['calls']} calls  RSS {f['rss_mb']:.0f} MB (PSS {f['pss_mb']:.0f} MB, "
               f"largest process {f['largest_process_rss_mb']:.0f} MB, {f['processes']} processes)")
    click.echo(json.dumps(f, sort_keys=True))


if __name__ == "__main__":
    main()
