"""The designers' pages through HTML: the versions list, an upload refused with its problems, deploy,
download, the modeler page's data, the form preview and the migration page. Only designers get in."""
from __future__ import annotations

import io
import json
import re

import pytest

from giaitrinh.config import load_settings
from giaitrinh.engine.services import definitions
from giaitrinh.web import create_app

from .test_design import LIFECYCLE, REVIEW_FORM, with_legal_review
from .test_design_api import MIWG
from .test_pages import csrf, login, page


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)


def _upload(client, name, data):
    html = page(client, "/thiet-ke/")
    return client.post("/thiet-ke/tai-len", data={"_csrf": csrf(html), "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def test_versions_list_upload_deploy_download(app, people):
    designer = login(app, "thietke")
    html = page(designer, "/thiet-ke/")
    assert 'data-version="1" data-status="deployed"' in html and "Đang triển khai" in html
    v1 = definitions.list_definitions(people["thietke"])["items"][0]
    assert v1["sha256"][:12] in html and "thietke" in html

    # A foreign file is refused with its problems, each with its line and element.
    refused = _upload(designer, "C.1.0.bpmn", (MIWG / "C.1.0.bpmn").read_bytes())
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert 'id="upload-problems"' in body and "<code>approveInvoice</code>" in body and "dòng" in body
    assert len(definitions.list_definitions(people["thietke"])["items"]) == 1

    # A good one becomes a draft; deploying it retires the old version.
    definitions.upload(with_legal_review(), people["thietke"], forms={"legal_review.json": REVIEW_FORM})
    saved = _upload(designer, "lifecycle.bpmn", LIFECYCLE.replace(b'value="15"', b'value="10"', 1))
    assert saved.status_code == 303
    html = page(designer, "/thiet-ke/")
    assert 'data-version="3" data-status="draft"' in html and "Đã lưu bản nháp phiên bản 3" in html
    v3 = definitions.list_definitions(people["thietke"])["items"][0]
    response = designer.post(f"/thiet-ke/{v3['id']}/trien-khai", data={"_csrf": csrf(html)})
    assert response.status_code == 303
    html = page(designer, "/thiet-ke/")
    assert 'data-version="3" data-status="deployed"' in html and 'data-version="1" data-status="retired"' in html
    assert designer.post(f"/thiet-ke/{v3['id']}/trien-khai", data={}).status_code == 400  # CSRF

    download = designer.get(f"/thiet-ke/{v1['id']}/tai-ve")
    assert download.data == LIFECYCLE and "giai_trinh-v1.bpmn" in download.headers["Content-Disposition"]

    # Other officials do not get in; nobody signed in is sent to sign in.
    assert login(app, "lanhdao").get("/thiet-ke/").status_code == 403
    assert app.test_client().get("/thiet-ke/").status_code == 302


def test_the_modeler_page_and_the_form_preview(app, people):
    designer = login(app, "thietke")
    v1 = definitions.list_definitions(people["thietke"])["items"][0]["id"]
    html = page(designer, f"/thiet-ke/{v1}/mo-hinh")
    assert "/vendor/bpmn-js/bpmn-modeler.production.min.js" in html and "/static/modeler.js" in html
    assert f'data-bpmn-url="/api/v1/definitions/{v1}/bpmn"' in html
    assert "<script>" not in html and " style=" not in html  # the CSP forbids both
    messages = json.loads(re.search(r"data-messages='([^']+)'", html).group(1))
    assert messages["saved"] == "Đã lưu bản nháp phiên bản %(v)s."
    token = re.search(r'data-csrf="([^"]+)"', html).group(1)

    preview = designer.post("/thiet-ke/bieu-mau/xem-truoc", json={"schema": REVIEW_FORM}, headers={"X-CSRF-Token": token})
    assert preview.status_code == 200 and preview.json["valid"]
    assert 'name="opinion"' in preview.json["html"] and "Ý kiến pháp chế" in preview.json["html"]
    hostile = dict(REVIEW_FORM, properties={"opinion": {"title": "<script>alert(1)</script>", "type": "string"}})
    preview = designer.post("/thiet-ke/bieu-mau/xem-truoc", json={"schema": hostile}, headers={"X-CSRF-Token": token})
    assert "<script>alert" not in preview.json["html"] and "&lt;script&gt;" in preview.json["html"]
    broken = designer.post("/thiet-ke/bieu-mau/xem-truoc", json={"schema": {"type": "object", "properties": {
        "a": {"type": "string"}}}}, headers={"X-CSRF-Token": token})
    assert not broken.json["valid"] and broken.json["html"] == "" and any("title" in p for p in broken.json["problems"])
    assert designer.post("/thiet-ke/bieu-mau/xem-truoc", json={"schema": REVIEW_FORM}).status_code == 400  # no CSRF
    # The modeler saves through the API with the session and the CSRF header, never without it.
    saved = designer.post("/api/v1/definitions", json={"bpmn": with_legal_review().decode(),
                                                       "forms": {"legal_review.json": REVIEW_FORM}},
                          headers={"X-CSRF-Token": token})
    assert saved.status_code == 201
    assert designer.post("/api/v1/definitions", json={"bpmn": "x"}).status_code == 400


def test_the_migration_page(app, people):
    from .helpers import submit

    designer = login(app, "thietke")
    v1 = definitions.list_definitions(people["thietke"])["items"][0]["id"]
    codes = [submit()["code"] for _ in range(2)]
    html = page(designer, f"/thiet-ke/{v1}/chuyen-doi")
    assert "Chưa có phiên bản nào khác" in html  # nothing to move to yet
    v2 = definitions.upload(with_legal_review(), people["thietke"], forms={"legal_review.json": REVIEW_FORM})
    definitions.deploy(v2["id"], people["thietke"])
    html = page(designer, f"/thiet-ke/{v1}/chuyen-doi")
    assert json.loads(re.search(r"data-codes='([^']+)'", html).group(1)) == codes
    assert f'<option value="{v2["id"]}">v2' in html and "/static/migrate.js" in html
    assert 'data-url="/api/v1/definitions/%d/migrate"' % v1 in html
    listed = page(designer, "/thiet-ke/")
    assert f'href="/thiet-ke/{v1}/chuyen-doi"' in listed
