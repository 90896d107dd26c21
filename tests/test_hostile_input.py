"""Hostile text in every field of the portal and of a task form: each value is either stored and
shown back exactly (in NFC) and harmlessly (escaped), or refused with an error on that field;
nothing half-stored, never a 500."""
from __future__ import annotations

import unicodedata

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from giaitrinh.config import load_settings
from giaitrinh.engine import db
from giaitrinh.engine.models import Request
from giaitrinh.web import create_app

from .helpers import CITIZEN
from .test_pages import citizen_submits, csrf, login, open_task, page

HOSTILE = {
    "script": "<script>alert('xss')</script><img src=x onerror=alert(1)>",
    "sql": "Robert'); DROP TABLE requests;-- \" OR 1=1 --",
    "null": "Nguyễn\x00Văn An",
    "huge": "N" * 10_000,
    "rtl": "Trần \u202eevil.exe\u202c Thị",
    "nfd": unicodedata.normalize("NFD", "Nguyễn Thị Ánh Tuyết, phường Mỹ Xuyên"),
}
PORTAL_FIELDS = ["requester.name", "requester.address", "requester.phone", "requester.email", "subject", "content"]


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)


def _count() -> int:
    with db.read_only() as session:
        return session.execute(select(func.count()).select_from(Request)).scalar_one()


def _form(**changes) -> dict:
    return {"requester.kind": "person", "requester.name": CITIZEN["requester"]["name"],
            "requester.address": CITIZEN["requester"]["address"], "requester.phone": CITIZEN["requester"]["phone"],
            "requester.email": CITIZEN["requester"]["email"], "unit": "MX", "subject": CITIZEN["subject"],
            "content": CITIZEN["content"], **changes}


def _harmless(body: str, value: str) -> None:
    shown = unicodedata.normalize("NFC", value)
    assert "<script>alert" not in body and "<img src=x" not in body
    assert str(escape(shown)) in body or str(escape(" ".join(shown.split()))) in body


@pytest.mark.parametrize("field", PORTAL_FIELDS)
def test_every_portal_field_takes_hostile_text_or_refuses_it(app, field):
    citizen = app.test_client()
    for kind, value in HOSTILE.items():
        before = _count()
        form_page = page(citizen, "/gui-yeu-cau")
        response = citizen.post("/gui-yeu-cau", data={"_csrf": csrf(form_page), **_form(**{field: value})})
        assert response.status_code in (303, 422), (field, kind, response.status_code)
        if response.status_code == 422:
            body = response.get_data(as_text=True)
            assert _count() == before, (field, kind)
            assert f'id="err-{field}"' in body or f'data-field="{field}"' in body or "field-error" in body, (field, kind)
            assert "<script>alert" not in body
            continue
        assert _count() == before + 1
        tracking = page(citizen, response.headers["Location"])
        if field == "requester.email":
            continue  # not shown on the tracking page; stored exactly below
        _harmless(tracking, value)
        with db.read_only() as session:
            newest = session.execute(select(Request).order_by(Request.id.desc()).limit(1)).scalar_one()
            stored = {"requester.name": newest.requester_name, "requester.address": newest.requester_address,
                      "requester.phone": newest.requester_phone, "subject": newest.subject,
                      "content": newest.content}[field]
        nfc = unicodedata.normalize("NFC", value)
        assert stored in (nfc, " ".join(nfc.split())), (field, kind)


def test_null_bytes_and_oversized_names_are_refused_on_their_field(app):
    citizen = app.test_client()
    form_page = page(citizen, "/gui-yeu-cau")
    for field, value in (("requester.name", HOSTILE["null"]), ("requester.name", HOSTILE["huge"]),
                         ("requester.email", "a\x00@b.vn"), ("subject", "x\x07y z")):
        response = citizen.post("/gui-yeu-cau", data={"_csrf": csrf(form_page), **_form(**{field: value})})
        assert response.status_code == 422, (field, value[:20])
    assert _count() == 0


def test_a_task_form_takes_hostile_text_or_refuses_it(app, people):
    citizen = app.test_client()
    code, token, _ = citizen_submits(citizen)
    reception, head, official = login(app, "tiepnhan"), login(app, "lanhdao"), login(app, "chuyenvien")
    path = open_task(reception, code, "Kiểm tra")
    reception.post(path, data={"_csrf": csrf(page(reception, path)), "decision": "accept"})
    path = open_task(head, code, "Phân công")
    head.post(path, data={"_csrf": csrf(page(head, path)), "assignee": "chuyenvien"})
    path = open_task(official, code, "dự thảo")
    for kind in ("null", "huge"):
        response = official.post(path, data={"_csrf": csrf(page(official, path)),
                                              "explanation.legal_basis": HOSTILE[kind] * (3 if kind == "huge" else 1),
                                              "explanation.content": "Nội dung"})
        assert response.status_code == 422, kind
        if kind == "null":
            assert "ký tự điều khiển" in response.get_data(as_text=True)
    text = HOSTILE["script"] + " " + HOSTILE["sql"] + " " + HOSTILE["rtl"] + " " + HOSTILE["nfd"]
    response = official.post(path, data={"_csrf": csrf(page(official, path)), "explanation.legal_basis": text,
                                         "explanation.content": text})
    assert response.status_code == 303
    approve = open_task(head, code, "Duyệt")
    _harmless(page(head, approve), text)
