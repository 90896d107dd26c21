"""Designers over HTTP: real BPMN no one here wrote (the BPMN MIWG reference models), hostile XML,
and the modeler's endpoints (validate, save with forms, download, migrate, check a form)."""
from __future__ import annotations

import json
import resource
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from giaitrinh.config import load_settings
from giaitrinh.web import create_app

from .helpers import CITIZEN
from .test_design import LIFECYCLE, REVIEW_FORM, with_legal_review

MIWG = Path(__file__).parent / "data" / "bpmn-miwg-reference"
MIWG_FILES = sorted(MIWG.glob("*.bpmn"))


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def designer(client):
    response = client.post("/api/v1/auth/token", json={"username": "thietke", "password": "demo"})
    return {"Authorization": f"Bearer {response.json['token']}"}


@contextmanager
def within(seconds: int):
    """Fail instead of hanging: an upload must answer in a few seconds whatever it holds."""
    def _alarm(*_):
        raise AssertionError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_the_reference_suite_is_all_here_with_its_licence():
    assert len(MIWG_FILES) == 21
    assert "Creative Commons Attribution 3.0" in (MIWG / "LICENSE.txt").read_text()
    assert "bpmn-miwg-test-suite" in (MIWG / "README.md").read_text()


# The parser is the same on both databases: SQLite takes all 21, PostgreSQL three (not collected,
# rather than skipped, so a skip in CI always means something is missing).
MIWG_CASES = [pytest.param(path, backend, id=f"{path.stem}-{backend}") for path in MIWG_FILES
              for backend in (("sqlite", "postgresql") if path.stem in ("A.1.0", "C.1.0", "C.8.1") else ("sqlite",))]


@pytest.mark.parametrize(("path", "database"), MIWG_CASES, indirect=["database"])
def test_each_reference_model_gets_a_draft_or_a_precise_list_of_problems(client, designer, path, database):
    with within(10):
        response = client.post("/api/v1/definitions", data=path.read_bytes(),
                               headers={**designer, "Content-Type": "application/xml"})
    assert response.status_code in (201, 422), response.get_data(as_text=True)[:500]
    if response.status_code == 201:
        assert response.json["status"] == "draft"
        return
    error = response.json["error"]
    assert error["code"] == "invalid_bpmn" and error["message"]
    problems = error["problems"]
    assert problems and all(isinstance(p["message"], str) and p["message"] for p in problems)
    # Each problem says where: a line in the uploaded file and, for an element, its id (as written there).
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n") + 1
    located = [p for p in problems if "line" in p]
    assert located, problems
    for p in located:
        assert 1 <= p["line"] <= lines
        if "element_id" in p:
            assert f'"{p["element_id"]}"' in text or f"'{p['element_id']}'" in text


def test_the_miwg_process_with_its_problems_fixed_becomes_a_draft(client, designer):
    """C.1.0 (an invoice process) is refused for reasons the designer can act on, each at its element."""
    response = client.post("/api/v1/definitions", data=(MIWG / "C.1.0.bpmn").read_bytes(),
                           headers={**designer, "Content-Type": "application/xml"})
    by_element: dict[str, list[str]] = {}
    for p in response.json["error"]["problems"]:
        by_element.setdefault(p.get("element_id"), []).append(p["message"])
    assert any("lane" in m for m in by_element["approveInvoice"])
    assert any("no form" in m for m in by_element["approveInvoice"])
    assert any("serviceTask" in m for m in by_element["archiveInvoice"])
    assert any("SyntaxError" in m for m in by_element["invoiceApproved"])  # a JUEL ${...} is not Python
    assert any("period." in m for m in by_element["bpmn-miwg-test-case-c.1.0"])


SECRET = "giaitrinh-secret-7f3a"
_HEAD = b'<?xml version="1.0"?>\n'
_DEFS = b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">'


def _hostile(tmp_path) -> dict[str, bytes]:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    laughs = b"".join(b'<!ENTITY l%d "%s">' % (i, (b"&l%d;" % (i - 1)) * 10) for i in range(1, 10))
    return {
        "file entity": _HEAD + b'<!DOCTYPE d [<!ENTITY x SYSTEM "file://' + str(secret).encode() + b'">]>' + _DEFS
        + b'<bpmn:process id="p" isExecutable="true"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process>'
        b"</bpmn:definitions>",
        "parameter entity": _HEAD + b'<!DOCTYPE d [<!ENTITY % p SYSTEM "file://' + str(secret).encode()
        + b'"> %p;]>' + _DEFS + b"</bpmn:definitions>",
        "network entity": _HEAD + b'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>' + _DEFS
        + b'<bpmn:process id="p"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process></bpmn:definitions>',
        "network DTD": _HEAD + b'<!DOCTYPE d SYSTEM "http://127.0.0.1:9/d.dtd">' + _DEFS + b"</bpmn:definitions>",
        "billion laughs": _HEAD + b'<!DOCTYPE d [<!ENTITY l0 "ha">' + laughs + b"]>" + _DEFS
        + b'<bpmn:process id="p"><bpmn:documentation>&l9;</bpmn:documentation></bpmn:process></bpmn:definitions>',
        "10 MB of nesting": _HEAD + b"<a>" * (10 * 1024 * 1024 // 7) + b"</a>" * (10 * 1024 * 1024 // 7),
        # Under the body and file size limits, far over the parser's depth limit.
        "deep nesting": _HEAD + _DEFS + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</bpmn:definitions>",
    }


@pytest.mark.parametrize("name", ["file entity", "parameter entity", "network entity", "network DTD",
                                  "billion laughs", "10 MB of nesting", "deep nesting"])
def test_hostile_xml_is_refused_without_reading_a_file_or_exhausting_memory(client, designer, tmp_path, name):
    from giaitrinh.engine.definitions import InvalidDefinition, parse_definition

    xml = _hostile(tmp_path)[name]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with within(10):
        response = client.post("/api/v1/definitions", data=xml, headers={**designer, "Content-Type": "application/xml"})
        # The parser itself, past the HTTP body limit too.
        try:
            parse_definition(xml)
        except InvalidDefinition as exc:
            assert SECRET not in json.dumps([p.as_dict() for p in exc.problems])
        else:
            raise AssertionError(f"{name} was accepted")
    assert response.status_code in (413, 422), response.status_code
    body = response.get_data(as_text=True)
    assert SECRET not in body and "ha" * 100 not in body
    error = response.json["error"]
    assert error["code"] == ("too_large" if response.status_code == 413 else "invalid_bpmn")
    if response.status_code == 422:
        assert error["problems"] and all(p["message"] for p in error["problems"])
    # Memory stays bounded: the peak resident size grew by less than 100 MB for a 10 MB document.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100 * 1024


def test_a_file_in_another_encoding_is_refused_precisely(client, designer):
    utf16 = LIFECYCLE.decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    response = client.post("/api/v1/definitions", data=utf16, headers={**designer, "Content-Type": "application/xml"})
    assert response.status_code == 422 and "UTF-8" in response.json["error"]["problems"][0]["message"]
    latin1 = LIFECYCLE.replace("Giải trình".encode(), "Gi\xe1i".encode("latin-1"), 1)
    response = client.post("/api/v1/definitions", data=latin1, headers={**designer, "Content-Type": "application/xml"})
    assert response.status_code == 422 and response.json["error"]["problems"][0]["line"] > 1


def test_the_modeler_endpoints(client, designer):
    listed = client.get("/api/v1/definitions", headers=designer).json["items"]
    v1 = listed[0]["id"]
    assert listed[0]["running"] == 0 and listed[0]["deployed_by"] == "thietke"
    got = client.get(f"/api/v1/definitions/{v1}", headers=designer).json
    assert got["tasks"]["receive"]["role"] == "reception" and "receive.json" in got["forms"]
    download = client.get(f"/api/v1/definitions/{v1}/bpmn?download=true", headers=designer)
    assert download.mimetype == "application/xml" and download.data == LIFECYCLE
    assert 'filename="giai_trinh-v1.bpmn"' in download.headers["Content-Disposition"]

    xml = with_legal_review().decode()
    checked = client.post("/api/v1/definitions/validate", json={"bpmn": xml}, headers=designer).json
    assert not checked["valid"] and any(p["element_id"] == "legal_review" for p in checked["problems"])
    checked = client.post("/api/v1/definitions/validate", json={"bpmn": xml, "forms": {"legal_review.json": REVIEW_FORM}},
                          headers=designer).json
    assert checked["valid"] and checked["problems"] == []
    assert client.get("/api/v1/definitions", headers=designer).json["total"] == 1  # nothing stored

    refused = client.post("/api/v1/definitions", json={"bpmn": xml}, headers=designer)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_bpmn"
    saved = client.post("/api/v1/definitions", json={"bpmn": xml, "forms": {"legal_review.json": REVIEW_FORM}},
                        headers=designer)
    assert saved.status_code == 201 and saved.json["version"] == 2 and saved.json["status"] == "draft"
    for bad, field in (({"bpmn": 3}, "bpmn"), ({"bpmn": xml, "forms": []}, "forms")):
        response = client.post("/api/v1/definitions", json=bad, headers=designer)
        assert response.status_code == 422 and field in response.json["error"]["fields"]

    client.post("/api/v1/requests", json=CITIZEN)
    assert client.post(f"/api/v1/definitions/{v1}/migrate", json={"to": saved.json["id"]}, headers=designer).status_code == 409
    assert client.post(f"/api/v1/definitions/{saved.json['id']}/deploy", headers=designer).json["status"] == "deployed"
    dry = client.post(f"/api/v1/definitions/{v1}/migrate", json={"to": saved.json["id"]}, headers=designer).json
    assert dry["dry_run"] and dry["total"] == 1 and dry["ok"] == 1 and dry["migrated"] == 0
    done = client.post(f"/api/v1/definitions/{v1}/migrate", json={"to": saved.json["id"], "dry_run": False},
                       headers=designer).json
    assert done["migrated"] == 1
    versions = {d["version"]: (d["status"], d["running"]) for d in client.get("/api/v1/definitions", headers=designer).json["items"]}
    assert versions == {1: ("retired", 0), 2: ("deployed", 1)}
    for bad in ({"to": "2"}, {"to": 2, "dry_run": "no"}, {"to": 2, "codes": "GT"}):
        assert client.post(f"/api/v1/definitions/{v1}/migrate", json=bad, headers=designer).status_code == 422

    form = client.post("/api/v1/forms/validate", json={"schema": {"type": "object", "properties": {"x": {"type": "list"}}}},
                       headers=designer).json
    assert not form["valid"] and form["problems"]
    assert client.post("/api/v1/forms/validate", json={"schema": REVIEW_FORM}, headers=designer).json == {
        "valid": True, "problems": []}
    reception = client.post("/api/v1/auth/token", json={"username": "tiepnhan", "password": "demo"}).json["token"]
    assert client.get(f"/api/v1/definitions/{v1}/bpmn", headers={"Authorization": f"Bearer {reception}"}).status_code == 403
