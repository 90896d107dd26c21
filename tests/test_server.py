"""How a serving process settles its heap once it is up (``server.settle_heap``)."""
from __future__ import annotations

import json
import subprocess
import sys

SETTLE = """
import gc, json
from giaitrinh import server
from giaitrinh.engine.services import requests  # a serving process has imported its engine
before = gc.get_freeze_count()
server.settle_heap()
cycle = []
cycle.append(cycle)  # garbage that only the collector frees
del cycle
from giaitrinh.engine import calendar
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                  "collected": gc.collect(), "holiday_years": calendar._national.cache_info().currsize}))
"""


def test_start_up_objects_are_frozen_and_young_collections_come_less_often():
    # In a process of its own: freezing this one would leave pytest's objects out of every collection.
    out = subprocess.run([sys.executable, "-c", SETTLE], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["before"] == 0
    assert figures["frozen"] > 50_000  # modules, SQLAlchemy's mappers, SpiffWorkflow: start-up's objects
    assert figures["threshold"][0] == 10_000
    assert figures["collected"] >= 1  # what is made after start-up is still collected
    assert figures["holiday_years"] == 2  # this year's and next year's, before the first request
