"""The lifecycle benchmark still runs end to end: a tiny N, figures only checked for sense."""
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
N = 3


def test_benchmark_takes_every_request_to_published(tmp_path):
    db_file = tmp_path / "bench.db"
    # A separate process: the benchmark points the engine's global database and clock at its own.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "lifecycle.py"), "--n", str(N), "--database-url", f"sqlite:///{db_file}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["n"] == N and figures["sqlite_published"] == N
    assert figures["bench"] == "lifecycle" and figures["db"] == "sqlite"
    for key in ("lifecycles_per_s", "task_completions_per_s", "raw_spiff_per_s", "raw_spiff_serialized_per_s",
                "ratio_to_serialized"):
        assert figures[key] > 0, key
    assert abs(figures["ratio_to_serialized"] - figures["lifecycles_per_s"] / figures["raw_spiff_serialized_per_s"]) < 0.01
    assert abs(figures["ratio_to_engine_serializer"]
               - figures["lifecycles_per_s"] / figures["spiff_serialized_lifecycles_per_s"]) < 0.01
    # The references really do their round-trips: plain SpiffWorkflow's serializer writes and reads
    # the whole spec with every state, several times the cost of the steps themselves.
    assert figures["raw_spiff_serialized_per_s"] < figures["raw_spiff_per_s"] / 2
    assert figures["spiff_serialized_lifecycles_per_s"] < figures["spiff_inmemory_lifecycles_per_s"]
    for key in ("sqlite_lifecycles_per_s", "sqlite_completions_per_s", "complete_p50_ms", "complete_p95_ms",
                "submit_p50_ms", "spiff_inmemory_lifecycles_per_s", "spiff_serialized_lifecycles_per_s",
                "ratio_inmemory_over_sqlite", "peak_rss_mb"):
        assert figures[key] > 0, key

    engine = create_engine(f"sqlite:///{db_file}")
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status, closed, published_at IS NOT NULL FROM requests")).all()
    engine.dispose()
    assert statuses == [("published", 1, 1)] * N
