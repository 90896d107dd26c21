"""The timer benchmark still runs end to end on the real PostgreSQL: tiny N, figures checked for sense
(it checks by itself that every timer fired exactly once, and fails otherwise)."""
import json
import subprocess
import sys
from pathlib import Path

from . import pg

ROOT = Path(__file__).resolve().parent.parent


def test_timer_benchmark_fires_everything_once_and_reports(tmp_path):
    pg.require()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "timers.py"), "--n", "20", "--workers", "1,2",
         "--realtime-workers", "2", "--spread", "2", "--admin-dsn", pg.ADMIN_DSN],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "timers" and figures["db"] == "postgresql" and figures["n"] == 20
    for key in ("timers_per_s_1w", "timers_per_s_2w", "timers_per_s_incl_startup_1w"):
        assert figures[key] > 0, key
    assert 0 <= figures["lateness_p50_ms"] <= figures["lateness_p99_ms"] <= figures["lateness_max_ms"]
    assert figures["lateness_max_ms"] < 60_000  # every timer fired within the run, none waited for a poll cycle
