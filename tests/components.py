"""Real components the tests need (PostgreSQL, chromium, wrk, bpmn-js): one rule for a missing one.

On a developer's machine a missing component skips the tests that need it; in CI (CI=true) it is
a failure, because there every component must be installed and running.
"""
from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(why: str) -> None:
    if in_ci():
        pytest.fail(f"{why} (CI needs it: tests must not skip)")
    pytest.skip(why)
