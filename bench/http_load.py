"""HTTP load on loopback: wrk against ``giaitrinh serve`` with production settings on the generated
city-scale database (``bench/dataset.py``, cached).

The server runs as a city would run it: ``GIAITRINH_ENV=production``, gunicorn with
``--workers`` processes of ``--threads`` threads, each with its timer scheduler; only the
per-IP rate limits are off (``GIAITRINH_RATE_LIMITS=off``), since every request of a load
generator comes from one address. For each target wrk runs ``--connections`` connections on
``--threads-wrk`` threads for ``--duration`` seconds, rotating through varied paths (search
words, units) and signed-in officials (session cookies for pages, bearer tokens for the API):

- ``home``: the portal's front page; ``published_page``: ``/cong-khai?q=...``, the public search;
- ``published_api``: ``GET /api/v1/published?q=...``;
- ``inbox_page``: ``/cong-viec/`` for officials of several units (session cookie);
- ``tasks_api``: ``GET /api/v1/tasks?scope=unit`` for heads of several units (bearer token);
- ``dashboard_page``: ``/giam-sat/`` for supervisors of several units.

Reported per target: requests/s, latency p50 / p95 / p99 (wrk's own histogram, through a Lua
``done`` hook) and non-2xx answers (the run fails if any). wrk comes from the distribution:
``apt-get install wrk``. The last line of stdout is one JSON object with every figure.

    python bench/http_load.py [--closed 1000000] [--open 100000] [--units 100] [--workers 2]
                              [--duration 10] [--connections 16] [--database-url URL]
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import click  # noqa: E402

import dataset  # noqa: E402
from inbox import SEARCHES  # noqa: E402
from served import Served  # noqa: E402

LUA = """
local requests = {%s}
local i = 0
request = function()
  i = i %% #requests + 1
  local r = requests[i]
  return wrk.format("GET", r[1], r[2])
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d, '
    .. '"p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d}\\n', summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
"""


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script(requests: list[tuple[str, dict]]) -> str:
    items = []
    for path, headers in requests:
        fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        items.append(f"{{{lua_string(path)}, {{{fields}}}}}")
    return LUA % ", ".join(items)


def wrk(base: str, requests: list[tuple[str, dict]], duration: int, connections: int, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script(requests))
    try:
        done = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
                               "--timeout", "30s", "-s", f.name, base], capture_output=True, text=True,
                              timeout=duration + 120)
    finally:
        Path(f.name).unlink()
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    raw = json.loads(line[len("WRK_JSON "):])
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "p95_ms": raw["p95_us"] / 1000, "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
            "requests": raw["requests"], "non_2xx": raw["non_2xx"], "socket_errors": raw["socket_errors"]}


def targets(server: Served, units: list[str]) -> dict[str, list[tuple[str, dict]]]:
    some = units[:: max(1, len(units) // 8)][:8]
    officials = [{"Cookie": server.session_cookie(f"cv_{u}_1")} for u in some]
    supervisors = [{"Cookie": server.session_cookie(f"tt_{u}")} for u in some]
    heads = [{"Authorization": "Bearer " + server.token(f"ld_{u}")} for u in some]
    searches = [quote(q) for q in SEARCHES]
    return {
        "home": [("/", {})],
        "published_page": [(f"/cong-khai?q={q}", {}) for q in searches],
        "published_api": [(f"/api/v1/published?q={q}", {}) for q in searches],
        "inbox_page": [("/cong-viec/", h) for h in officials],
        "tasks_api": [("/api/v1/tasks?scope=unit", h) for h in heads],
        "dashboard_page": [("/giam-sat/", h) for h in supervisors],
    }


def run(closed: int, open_: int, units: int, workers: int, threads: int, duration: int, connections: int,
        wrk_threads: int, database_url: str | None, only: tuple[str, ...] = ()) -> dict:
    if shutil.which("wrk") is None:
        raise click.ClickException("wrk is not installed: apt-get install -y wrk (Debian, Ubuntu)")
    url = dataset.ensure(closed, open_, units, database_url)
    figures: dict = {"bench": "http", "closed": closed, "open": open_, "units": units, "n": closed + open_,
                     "workers": workers, "threads": threads, "connections": connections, "duration_s": duration,
                     "db": "sqlite" if url.startswith("sqlite") else "postgresql"}
    with Served(url, workers=workers, threads=threads) as server:
        for name, requests in targets(server, dataset.unit_codes(units)).items():
            if only and name not in only:
                continue
            for path, headers in requests[:3]:  # each answers before it is loaded
                status, body = server.get(path, headers)
                if status != 200:
                    raise RuntimeError(f"{name}: GET {path} answered {status}: {body[:500]!r}")
            click.echo(f"wrk: {name} for {duration} s...", err=True)
            result = wrk(server.base, requests, duration, connections, wrk_threads)
            if result["non_2xx"]:
                raise RuntimeError(f"{name}: {result['non_2xx']} answers were not 2xx")
            for key, value in result.items():
                figures[f"{name}_{key}"] = round(value, 2) if isinstance(value, float) else value
    return figures


@click.command()
@click.option("--closed", default=1_000_000, show_default=True)
@click.option("--open", "open_", default=100_000, show_default=True)
@click.option("--units", default=100, show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, help="Threads per worker.")
@click.option("--duration", default=10, show_default=True, help="Seconds of load per target.")
@click.option("--connections", default=16, show_default=True)
@click.option("--threads-wrk", "wrk_threads", default=2, show_default=True)
@click.option("--only", multiple=True, help="Run only these targets (repeatable).")
@click.option("--database-url", default=None,
              help="Default: a cached SQLite file under instance/bench/; a PostgreSQL URL is created if missing.")
def main(closed, open_, units, workers, threads, duration, connections, wrk_threads, only, database_url) -> None:
    """Requests/s and p95 of the portal, the search and the inbox under wrk."""
    f = run(closed, open_, units, workers, threads, duration, connections, wrk_threads, database_url, tuple(only))
    click.echo(f"\nHTTP on {f['db']}, {f['n']:,} requests, {workers} workers x {threads} threads, "
               f"{connections} connections, {duration} s per target")
    for name in ("home", "published_page", "published_api", "inbox_page", "tasks_api", "dashboard_page"):
        if f"{name}_rps" in f:
            click.echo(f"  {name:<16} {f[name + '_rps']:>8.1f} req/s   p50 {f[name + '_p50_ms']:>8.1f} ms   "
                       f"p95 {f[name + '_p95_ms']:>8.1f} ms   p99 {f[name + '_p99_ms']:>8.1f} ms")
    click.echo(json.dumps(f, sort_keys=True))


if __name__ == "__main__":
    main()
