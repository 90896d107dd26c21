"""Documents and attachments over HTTP: the API of API.md, the tracking page, the officials' pages,
the administrators' templates; files served as attachments; size limits."""
import hashlib
import io
import re

import pytest

from giaitrinh.config import load_settings
from giaitrinh.engine import attachments as files
from giaitrinh.web import create_app

from .helpers import do, submit
from .test_documents import docx_bytes, pdf_text, png_bytes
from .test_pages import csrf, login, page


@pytest.fixture(autouse=True)
def _store(tmp_path):
    files.set_storage_dir(tmp_path / "attachments")
    yield
    files.set_storage_dir(None)


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t", dev_clock=False), boot_engine=False)


def bearer(client, username):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"})
    return {"Authorization": f"Bearer {response.json['token']}"}


def assert_served_as_attachment(response, mime):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == mime
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]


def test_documents_api_for_the_requester_and_officials(app, people):
    client = app.test_client()
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    token = {"X-Request-Token": sub["token"]}
    listed = client.get(f"/api/v1/requests/{sub['code']}/documents", headers=token)
    assert listed.status_code == 200
    item, = listed.json["items"]
    assert item["kind"] == "acceptance_notice" and len(item["sha256"]) == 64
    assert set(item) >= {"id", "kind", "issued_at", "sha256", "pdf_url", "docx_url"}
    pdf = client.get(item["pdf_url"], headers=token)
    assert_served_as_attachment(pdf, "application/pdf")
    assert hashlib.sha256(pdf.data).hexdigest() == item["sha256"] == pdf.headers["X-Content-SHA256"]
    assert "Mỹ Xuyên, ngày 20 tháng 11 năm 2026" in pdf_text(pdf.data)
    word = client.get(item["docx_url"], headers=token)
    assert_served_as_attachment(word, "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    assert hashlib.sha256(word.data).hexdigest() == item["docx_sha256"]

    assert client.get(f"/api/v1/requests/{sub['code']}/documents").status_code == 404
    wrong = client.get(f"/api/v1/requests/{sub['code']}/documents", headers={"X-Request-Token": "x" * 32})
    assert wrong.status_code == 404 and wrong.json["error"]["code"] == "not_found"
    assert client.get(item["pdf_url"], headers={"X-Request-Token": submit()["token"]}).status_code == 404
    other_unit = bearer(client, "chuyenvien2")
    assert client.get(f"/api/v1/requests/{sub['code']}/documents", headers=other_unit).status_code == 403
    assert client.get(item["pdf_url"], headers=other_unit).status_code == 403
    same_unit = bearer(client, "chuyenvien")
    assert client.get(f"/api/v1/requests/{sub['code']}/documents", headers=same_unit).json == listed.json
    assert client.get(item["pdf_url"], headers=same_unit).data == pdf.data
    assert client.get(item["pdf_url"].replace("/pdf", "/exe"), headers=token).status_code == 404
    spec = client.get("/api/v1/openapi.json").json
    assert "/api/v1/requests/{code}/documents" in spec["paths"]


def multipart_submission(client, **extra):
    html = page(client, "/gui-yeu-cau")
    form = {"_csrf": csrf(html), "requester.kind": "person", "requester.name": "Trần Thị Bình",
            "requester.address": "5 Lê Lợi, phường Mỹ Xuyên", "requester.phone": "0913 222 333", "unit": "MX",
            "subject": "Giải trình về việc cấp phép xây dựng", "content": "Đề nghị giải trình việc cấp phép số 45."}
    form.update(extra)
    return client.post("/gui-yeu-cau", data=form, content_type="multipart/form-data")


def test_citizen_attaches_evidence_and_downloads_documents_from_the_tracking_page(app, people):
    client = app.test_client()
    png = png_bytes()
    response = multipart_submission(client, attachments=[(io.BytesIO(png), "ảnh hiện trạng.png"),
                                                         (io.BytesIO(docx_bytes()), "đơn.docx")])
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    location = response.headers["Location"]
    code = location.split("/yeu-cau/")[1].split("?")[0]
    token = re.search(r"token=([^&]+)", location).group(1)
    do(code, "receive", people["tiepnhan"], {"decision": "accept"})
    html = page(client, f"/yeu-cau/{code}?token={token}")
    assert "Thông báo thụ lý giải trình" in html and "1/TB-UBND" in html and "ảnh hiện trạng.png" in html
    links = re.findall(r'href="(/yeu-cau/[^"]+/(?:van-ban|tep)/[^"]+)"', html)
    assert len(links) == 4  # PDF and DOCX of the notice, two attachments
    for link in links:
        got = client.get(link.replace("&amp;", "&"))
        assert got.status_code == 200 and got.headers["Content-Disposition"].startswith("attachment;")
    evidence = next(link for link in links if "/tep/" in link)
    assert client.get(evidence.replace("&amp;", "&")).data == png
    # Without the token, or with another request's, the links open nothing.
    assert client.get(evidence.split("?")[0]).status_code == 404
    assert client.get(evidence.split("?")[0] + "?token=" + submit()["token"]).status_code == 404


def test_attachments_refused_by_content_and_size(app):
    client = app.test_client()
    exe = multipart_submission(client, attachments=[(io.BytesIO(b"MZ\x90\x00" + b"\0" * 500), "quyet-dinh.pdf")])
    assert exe.status_code == 422
    assert "quyet-dinh.pdf" in exe.get_data(as_text=True) and "theo nội dung" in exe.get_data(as_text=True)
    big = multipart_submission(client, attachments=[(io.BytesIO(b"%PDF-" + b"0" * files.MAX_BYTES), "lon.pdf")])
    assert big.status_code == 413 and "10 MB" in big.get_data(as_text=True)
    assert multipart_submission(client, attachments=[(io.BytesIO(b"%PDF-" + b"0" * (files.MAX_BYTES - 5)),
                                                      "vua.pdf")]).status_code == 303
    # Bodies that take no files keep the small limit.
    huge_json = client.post("/api/v1/requests", data=b'{"subject": "' + b"x" * (2 * 1024 * 1024) + b'"}',
                            content_type="application/json")
    assert huge_json.status_code == 413 and huge_json.json["error"]["code"] == "too_large"


def test_officials_see_documents_and_attach_signed_scans(app, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    head = login(app, "lanhdao")
    html = page(head, f"/giam-sat/ho-so/{sub['code']}")
    assert "Thông báo thụ lý giải trình" in html and "1/TB-UBND" in html
    scan = b"%PDF-1.4\n%signed\n"
    response = head.post(f"/giam-sat/ho-so/{sub['code']}/dinh-kem", content_type="multipart/form-data",
                         data={"_csrf": csrf(html), "note": "Thông báo đã ký, đóng dấu",
                               "file": (io.BytesIO(scan), "thong-bao-da-ky.pdf")})
    assert response.status_code == 303
    html = page(head, f"/giam-sat/ho-so/{sub['code']}")
    assert "thong-bao-da-ky.pdf" in html and "Bản quét đã ký" in html
    link = re.search(r'href="(/yeu-cau/[^"]+/tep/\d+)"', html).group(1)
    got = head.get(link)
    assert_served_as_attachment(got, "application/pdf")
    assert got.data == scan
    refused = head.post(f"/giam-sat/ho-so/{sub['code']}/dinh-kem", content_type="multipart/form-data",
                        data={"_csrf": csrf(html), "file": (io.BytesIO(b"MZ" + b"\0" * 64), "x.pdf")})
    assert refused.status_code == 303
    assert "theo nội dung" in page(head, f"/giam-sat/ho-so/{sub['code']}")
    other = login(app, "chuyenvien2")
    assert other.get(link).status_code == 403
    html_other = page(other, "/cong-viec/")
    assert other.post(f"/giam-sat/ho-so/{sub['code']}/dinh-kem", content_type="multipart/form-data",
                      data={"_csrf": csrf(html_other), "file": (io.BytesIO(scan), "x.pdf")}).status_code == 403
    # The assigned official's task page lists the case file too.
    do(sub["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    official = login(app, "chuyenvien")
    inbox = page(official, "/cong-viec/?scope=mine")
    task_link = re.search(r'href="(/cong-viec/[0-9a-f-]{36})"', inbox).group(1)
    task_page = page(official, task_link)
    assert "1/TB-UBND" in task_page and "thong-bao-da-ky.pdf" in task_page


def test_administrator_edits_a_template_and_a_bad_placeholder_is_refused(app):
    admin = login(app, "admin")
    listing = page(admin, "/quan-tri/mau-van-ban")
    assert "Thông báo từ chối giải trình" in listing
    form_html = page(admin, "/quan-tri/mau-van-ban/refusal_notice")
    assert "{ground}" in form_html
    current = {name: re.search(rf'name="{name}"[^>]*>(.*?)</textarea>', form_html, re.S).group(1)
               for name in ("title", "subject", "body", "recipients", "signer_title")}
    import html as htmllib
    current = {k: htmllib.unescape(v) for k, v in current.items()}
    bad = admin.post("/quan-tri/mau-van-ban/refusal_notice",
                     data={"_csrf": csrf(form_html), **current, "body": "Từ chối vì {ly_do}."})
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "{ly_do}" in text and "{ground}" in text
    good = admin.post("/quan-tri/mau-van-ban/refusal_notice",
                      data={"_csrf": csrf(form_html), **current, "body": "Từ chối yêu cầu {code} vì: {ground}."})
    assert good.status_code == 303
    assert "Từ chối yêu cầu {code} vì: {ground}." in page(admin, "/quan-tri/mau-van-ban/refusal_notice")
    head = login(app, "lanhdao")
    assert head.get("/quan-tri/mau-van-ban").status_code == 403


def test_officials_attach_over_the_api(app):
    client = app.test_client()
    sub = submit()
    url = f"/api/v1/requests/{sub['code']}/attachments"
    scan = b"%PDF-1.7\n%scan\n"
    assert client.post(url, data={"file": (io.BytesIO(scan), "a.pdf")}, content_type="multipart/form-data").status_code == 401
    head = bearer(client, "lanhdao")
    created = client.post(url, headers=head, content_type="multipart/form-data",
                          data={"file": [(io.BytesIO(scan), "a.pdf"), (io.BytesIO(png_bytes()), "b.png")], "note": "Bản ký"})
    assert created.status_code == 201 and [a["content_type"] for a in created.json["items"]] == ["application/pdf", "image/png"]
    refused = client.post(url, headers=head, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(b"<html><script>alert(1)</script>"), "a.pdf")})
    assert refused.status_code == 422 and "file.0" in refused.json["error"]["fields"]
    too_big = client.post(url, headers=head, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(b"%PDF-" + b"0" * files.MAX_BYTES), "a.pdf")})
    assert too_big.status_code == 413 and too_big.json["error"]["code"] == "too_large"
    assert client.post(url, headers=bearer(client, "chuyenvien2"), content_type="multipart/form-data",
                       data={"file": (io.BytesIO(scan), "a.pdf")}).status_code == 403
    listed = client.get(url, headers={"X-Request-Token": sub["token"]}).json["items"]
    assert len(listed) == 2
    got = client.get(listed[1]["url"], headers={"X-Request-Token": sub["token"]})
    assert_served_as_attachment(got, "image/png")
