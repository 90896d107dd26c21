"""Schemathesis against the API's own OpenAPI document: for a bounded number of generated
examples per operation, no 5xx and every response conforms to the document."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from giaitrinh import demo
from giaitrinh.config import load_settings
from giaitrinh.engine import calendar as cal
from giaitrinh.engine import db
from giaitrinh.engine.models import Base
from giaitrinh.web import create_app

from .helpers import submit


@pytest.fixture
def api_schema(tmp_path, fixed_clock):
    engine = db.init_db(f"sqlite:///{tmp_path / 'fuzz.db'}")
    Base.metadata.create_all(engine)
    cal.invalidate_cache()
    demo._setup_accounts()  # noqa: SLF001
    demo._deploy()  # noqa: SLF001
    submit()
    app = create_app(load_settings(database_url=str(engine.url), secret_key="t", dev_clock=False), boot_engine=False)
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    engine.dispose()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_api_conforms_to_its_document(api_schema):
    """Each operation of the document, with generated (valid and invalid) inputs."""
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(case=operation.as_strategy())
        def exercise(case):
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.call_and_validate(checks=CHECKS)

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures[operation.label] = str(exc)[:1500]
    # Every operation really ran, several times (hypothesis may stop early on tiny input spaces).
    assert len(calls) == len(operations) and sum(calls.values()) >= 5 * len(operations), calls
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
