"""The notification pages: the bell and its list, /dev/outbox (development only, administrators only),
and the administrators' outgoing-mail page with its retry button."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from giaitrinh.config import load_settings
from giaitrinh.engine import db, mail
from giaitrinh.engine.models import OutboxMessage
from giaitrinh.web import create_app

from .helpers import do, submit
from .test_pages import citizen_submits, csrf, login, page


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)


def test_the_bell_counts_unread_notices_and_the_list_marks_them_read(app, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    do(sub["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    official = login(app, "chuyenvien")
    html = page(official, "/cong-viec/")
    assert re.search(r'class="bell has-unread"[^>]*>Thông báo <span class="badge late"[^>]*>1</span>', html)
    listing = page(official, "/thong-bao/")
    assert sub["code"] in listing and "Phân công" in listing
    assert f'href="/giam-sat/ho-so/{sub["code"]}"' in listing
    response = official.post("/thong-bao/da-doc", data={"_csrf": csrf(listing)})
    assert response.status_code == 303
    assert "has-unread" not in page(official, "/cong-viec/")
    # Another ward's official: nothing about this case, by bell or list.
    other = login(app, "chuyenvien2")
    assert sub["code"] not in page(other, "/thong-bao/")
    assert "has-unread" not in page(other, "/cong-viec/")
    # Without a CSRF token the form is refused; anonymous visitors go to the sign-in page.
    assert official.post("/thong-bao/da-doc").status_code == 400
    assert app.test_client().get("/thong-bao/").status_code == 302


def test_dev_outbox_shows_the_demo_mail_to_administrators_only(app, people):
    client = app.test_client()
    code, token, _location = citizen_submits(client)
    assert mail.deliver_due() == 1  # the outbox backend of development
    admin = login(app, "admin")
    html = page(admin, "/dev/outbox")
    assert "Xác nhận đã nhận yêu cầu giải trình" in html and "an@example.vn" in html
    link = f"http://127.0.0.1:8000/yeu-cau/{code}?token={token}"
    assert f'href="{link}"' in html  # the demo follows the link from here
    assert page(client, f"/yeu-cau/{code}?token={token}")  # and it works
    assert "<script" not in html.split("</head>", 1)[1]
    assert login(app, "thanhtra").get("/dev/outbox").status_code == 403
    assert app.test_client().get("/dev/outbox").status_code == 302


def test_dev_outbox_does_not_exist_in_production(world, monkeypatch):
    monkeypatch.setenv("GIAITRINH_ENV", "production")
    monkeypatch.setenv("GIAITRINH_SMTP_HOST", "127.0.0.1")
    app = create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)
    submit()
    admin = login(app, "admin")
    assert admin.get("/dev/outbox").status_code == 404
    assert page(admin, "/quan-tri/thu-gui")  # the delivery list without bodies stays


def test_outgoing_mail_page_lists_failures_and_retries_them(app, people):
    submit()
    with db.transaction() as session:
        session.execute(update(OutboxMessage).values(status="failed", attempts=5, last_error="SMTPRecipientsRefused"))
    admin = login(app, "admin")
    html = page(admin, "/quan-tri/thu-gui?status=failed")
    assert "SMTPRecipientsRefused" in html and "Kính gửi" not in html  # no bodies here
    message_id = re.search(r'action="/quan-tri/thu-gui/(\d+)/gui-lai"', html).group(1)
    response = admin.post(f"/quan-tri/thu-gui/{message_id}/gui-lai", data={"_csrf": csrf(html)})
    assert response.status_code == 303
    with db.read_only() as session:
        assert session.execute(select(OutboxMessage.status)).scalar_one() == "queued"
    assert mail.deliver_due() == 1
    assert login(app, "lanhdao").get("/quan-tri/thu-gui").status_code == 403


def test_the_api_lists_and_marks_my_notifications(app, people):
    sub = submit()
    do(sub["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    do(sub["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    client = app.test_client()

    def bearer(username):
        token = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"}).json["token"]
        return {"Authorization": f"Bearer {token}"}

    mine = bearer("chuyenvien")
    found = client.get("/api/v1/notifications?unread=true", headers=mine).json
    assert found["total"] == 1 and found["unread"] == 1 and found["items"][0]["request_code"] == sub["code"]
    assert client.get("/api/v1/notifications", headers=bearer("chuyenvien2")).json["total"] == 0
    bad = client.post("/api/v1/notifications/read", headers=mine, json={"ids": ["x"]})
    assert bad.status_code == 422 and "ids" in bad.json["error"]["fields"]
    assert client.post("/api/v1/notifications/read", headers=mine, json={"ids": [2 ** 40]}).status_code == 422
    marked = client.post("/api/v1/notifications/read", headers=mine, json={"ids": [found["items"][0]["id"]]})
    assert marked.json == {"marked": 1}
    assert client.get("/api/v1/notifications?unread=true", headers=mine).json["total"] == 0
    assert client.get("/api/v1/notifications").status_code == 401
