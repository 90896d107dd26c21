"""The pages people use: a request taken from the portal to its published answer through HTML forms."""
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from giaitrinh.config import load_settings
from sqlalchemy import select

from giaitrinh.engine import clock, db, timers
from giaitrinh.engine.models import AuditEvent
from giaitrinh.web import create_app

from .helpers import CITIZEN


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t", dev_clock=True), boot_engine=False)


def page(client, path, status=200):
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:800])
    return response.get_data(as_text=True)


def csrf(html):
    return re.search(r'name="_csrf" value="([^"]+)"', html).group(1)


def post(client, path, data, status=303, form_page=None):
    html = page(client, form_page or path)
    response = client.post(path, data={"_csrf": csrf(html), **data})
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:1500])
    return response


def login(app, username):
    client = app.test_client()
    html = page(client, "/dang-nhap")
    response = client.post("/dang-nhap", data={"_csrf": csrf(html), "username": username, "password": "demo"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def citizen_submits(client, **changes):
    form = {"requester.kind": "person", "requester.name": CITIZEN["requester"]["name"],
            "requester.address": CITIZEN["requester"]["address"], "requester.phone": CITIZEN["requester"]["phone"],
            "requester.email": CITIZEN["requester"]["email"], "unit": "MX", "subject": CITIZEN["subject"],
            "content": CITIZEN["content"], **changes}
    response = post(client, "/gui-yeu-cau", form)
    target = urlparse(response.headers["Location"])
    code = target.path.rsplit("/", 1)[-1]
    return code, parse_qs(target.query)["token"][0], response.headers["Location"]


def open_task(client, code, step_title):
    """The inbox row of ``code`` whose step reads ``step_title``: its task page URL."""
    html = page(client, "/cong-viec/?scope=unit")
    for row in re.findall(r"<tr class=\"u-[a-z]+\">(.*?)</tr>", html, re.S):
        if code in row and step_title in row:
            return re.search(r'href="(/cong-viec/[^"]+)"', row).group(1)
    raise AssertionError(f"no {step_title} task for {code} in the inbox:\n{html[:3000]}")


def test_a_request_from_portal_to_published_answer(app, monkeypatch):
    citizen = app.test_client()
    assert "Gửi yêu cầu giải trình" in page(citizen, "/")
    code, token, link = citizen_submits(citizen)
    tracking = page(citizen, link + "&moi=1" if "moi" not in link else link)
    assert code in tracking and "Lưu lại đường dẫn theo dõi" in tracking
    assert "Hạn thông báo thụ lý" in tracking and "30/11/2026 23:59" in tracking
    assert "Còn 5 ngày làm việc" in tracking

    reception = login(app, "tiepnhan")
    inbox = page(reception, "/cong-viec/")
    assert code in inbox and "Còn 5 ngày làm việc" in inbox
    receive = open_task(reception, code, "Kiểm tra")
    form = page(reception, receive)
    # The form comes from receive.json: every decision and every legal ground of art. 5-6 is offered.
    for text in ("Thụ lý giải trình", "Từ chối (nêu căn cứ)", "khoản 1 Điều 5", "Người đại diện không có giấy tờ hợp lệ"):
        assert text in form
    # A refusal without its ground is refused by the server, field by field, and nothing moves.
    bad = post(reception, receive, {"decision": "refuse"}, status=422)
    assert "Trường này là bắt buộc" in bad.get_data(as_text=True)
    assert 'value="refuse" checked' in bad.get_data(as_text=True)
    post(reception, receive, {"decision": "accept", "note": "Đủ điều kiện thụ lý."})

    head = login(app, "lanhdao")
    assign = open_task(head, code, "Phân công")
    options = page(head, assign)
    assert "Nguyễn Văn Chuyên" in options and "Phạm Thị Viên" not in options  # officials of MX only
    post(head, assign, {"assignee": "chuyenvien", "note": "Đề nghị xử lý đúng hạn."})

    official = login(app, "chuyenvien")
    explain = open_task(official, code, "dự thảo")
    # An extension beyond 15 days is refused with the field named.
    bad = post(official, explain, {"explanation.legal_basis": "Luật Đất đai 2024, Điều 79",
                                   "explanation.content": "Nội dung giải trình.", "extend.days": "20",
                                   "extend.reason": "Nội dung phức tạp"}, status=422)
    assert "Tối đa là 15" in bad.get_data(as_text=True)
    post(official, explain, {"explanation.legal_basis": "Luật Đất đai 2024, Điều 79",
                             "explanation.content": "Ông Nguyễn Văn An, số điện thoại 0912 345 678, đã được "
                                                    "thông báo thu hồi đất đúng trình tự."})

    approve = open_task(head, code, "Duyệt")
    assert "Luật Đất đai 2024, Điều 79" in page(head, approve)
    post(head, approve, {"approved": "true"})

    publish_path = open_task(reception, code, "công khai")
    preview = page(reception, publish_path).split("Bản sẽ công khai")[1].split('task-form')[0]
    removed, published = preview.split("</details>")
    assert "đã ẩn" in published and "0912 345 678" not in published and "Nguyễn Văn An" not in published
    # The publisher sees exactly what the redaction took out, and why.
    assert "<del>0912 345 678</del>" in removed and "<del>Nguyễn Văn An</del>" in removed
    assert "Họ tên người yêu cầu" in removed
    post(reception, publish_path, {"publish": "true"})

    tracking = page(citizen, f"/yeu-cau/{code}?token={token}")
    assert "Đã công khai" in tracking and "Luật Đất đai 2024, Điều 79" in tracking
    post(citizen, f"/yeu-cau/{code}/danh-gia", {"token": token, "score": "5", "comment": "Rõ ràng"},
         form_page=f"/yeu-cau/{code}?token={token}")
    assert "Bạn đã đánh giá" in page(citizen, f"/yeu-cau/{code}?token={token}")

    # Anyone finds the answer without diacritics; the requester's name and phone are not in it.
    found = page(app.test_client(), "/cong-khai?q=thu+hoi+dat")
    assert code in found and "1 kết quả" in found
    # Past the count's cap the page says "more than", in both languages.
    from giaitrinh.engine.services import requests as requests_service
    monkeypatch.setattr(requests_service, "TOTAL_CAP", 0)
    assert "Hơn 0 kết quả" in page(app.test_client(), "/cong-khai?q=thu+hoi+dat")
    assert "More than 0 results" in page(app.test_client(), "/cong-khai?q=thu+hoi+dat&lang=en")
    monkeypatch.undo()
    answer = page(app.test_client(), f"/cong-khai/{code}")
    assert "Luật Đất đai 2024" in answer and "0912 345 678" not in answer and "Nguyễn Văn An" not in answer


def test_citizen_sees_nothing_without_the_token_and_can_withdraw(app):
    citizen = app.test_client()
    code, token, _ = citizen_submits(citizen)
    assert "không đúng" in page(citizen, f"/yeu-cau/{code}?token=wrong", status=404)
    assert "không đúng" in page(citizen, f"/yeu-cau/{code}", status=404)
    found = citizen.get(f"/tra-cuu?code={code.lower()}&token={token}")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/yeu-cau/{code}?token={token}")
    post(citizen, f"/yeu-cau/{code}/rut", {"token": token, "reason": "Đã được giải quyết"},
         form_page=f"/yeu-cau/{code}?token={token}")
    html = page(citizen, f"/yeu-cau/{code}?token={token}")
    assert "Đã rút yêu cầu" in html and "Đã đình chỉ" in html and "Rút yêu cầu giải trình" not in html


def test_submission_errors_are_shown_per_field_and_keep_what_was_typed(app):
    citizen = app.test_client()
    response = post(citizen, "/gui-yeu-cau", {"requester.name": "Trần Thị Bình", "requester.phone": "abc",
                                             "subject": "Về việc cấp phép xây dựng", "content": "ngắn"}, status=422)
    html = response.get_data(as_text=True)
    assert 'value="Trần Thị Bình"' in html
    for field in ("requester-address", "requester-phone", "content"):
        assert f'id="err-{field}"' in html, field


def test_user_text_is_escaped_everywhere(app):
    citizen = app.test_client()
    code, token, _ = citizen_submits(citizen, subject="<script>alert(1)</script> thu hồi đất",
                                     content="<img src=x onerror=alert(1)> nội dung yêu cầu giải trình")
    tracking = page(citizen, f"/yeu-cau/{code}?token={token}")
    assert "<script>alert(1)</script>" not in tracking and "&lt;script&gt;alert(1)&lt;/script&gt;" in tracking
    assert "<img src=x" not in tracking
    reception = login(app, "tiepnhan")
    assert "<script>alert(1)" not in page(reception, "/cong-viec/")
    assert "<img src=x" not in page(reception, open_task(reception, code, "Kiểm tra"))


def test_forms_without_csrf_token_change_nothing(app):
    citizen = app.test_client()
    page(citizen, "/gui-yeu-cau")
    response = citizen.post("/gui-yeu-cau", data={"subject": "x"})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    reception = login(app, "tiepnhan")
    assert reception.post("/dang-xuat").status_code == 400
    assert "Trần Thị Tiếp Nhận" in page(reception, "/cong-viec/")  # still signed in


def test_officials_must_sign_in_and_only_act_on_their_tasks(app):
    anonymous = app.test_client()
    response = anonymous.get("/cong-viec/")
    assert response.status_code == 302 and "/dang-nhap" in response.headers["Location"]
    html = page(anonymous, "/dang-nhap")
    bad = anonymous.post("/dang-nhap", data={"_csrf": csrf(html), "username": "tiepnhan", "password": "sai"})
    assert bad.status_code == 401 and "Sai tên đăng nhập hoặc mật khẩu" in bad.get_data(as_text=True)
    code, _, _ = citizen_submits(app.test_client())
    reception = login(app, "tiepnhan")
    receive = open_task(reception, code, "Kiểm tra")
    other_unit = login(app, "chuyenvien2")
    assert code not in page(other_unit, "/cong-viec/")
    assert "Không có quyền" in page(other_unit, receive, status=403)
    # The head may look at the reception task but not decide it (another role's step).
    head = login(app, "lanhdao")
    assert "không xử lý công việc này" in page(head, receive)
    assert head.post(receive, data={"_csrf": csrf(page(head, "/cong-viec/")), "decision": "accept"}).status_code == 403


def test_overdue_case_reaches_supervisor_and_suspension_moves_the_deadline(app):
    citizen = app.test_client()
    late, _, _ = citizen_submits(citizen)
    paused, _, _ = citizen_submits(citizen, subject="Giải trình về việc cấp giấy phép kinh doanh")
    supervisor = login(app, "thanhtra")
    # The head suspends the second case (requester ill) before the deadline passes.
    head = login(app, "lanhdao")
    post(head, f"/giam-sat/ho-so/{paused}/tam-dinh-chi", {"ground": "unable", "note": "Người yêu cầu nằm viện"},
         form_page=f"/giam-sat/ho-so/{paused}")
    assert "Tạm đình chỉ" in page(head, f"/giam-sat/ho-so/{paused}")

    clock.get_clock().set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    assert timers.run_due(clock.now()) == 1  # only the running case's deadline fires
    board = page(supervisor, "/giam-sat/")
    assert late in board.split("Cảnh báo quá hạn đang mở")[2] and "Tiếp nhận, thụ lý" in board
    assert re.search(r'<span class="n">1</span><span class="l">Quá hạn', board)
    assert paused not in page(supervisor, "/giam-sat/?show=overdue")
    assert paused in page(supervisor, "/giam-sat/?show=suspended")
    assert late in page(supervisor, "/giam-sat/?show=stuck")
    # The head's escalation task carries the missed deadline, so it tops the head's inbox as late.
    rows = re.findall(r'<tr class="u-([a-z]+)">(.*?)</tr>', page(head, "/cong-viec/"), re.S)
    assert rows[0][0] == "late" and late in rows[0][1] and "Cảnh báo quá hạn" in rows[0][1]
    reception = login(app, "tiepnhan")
    rows = re.findall(r'<tr class="u-([a-z]+)">(.*?)</tr>', page(reception, "/cong-viec/"), re.S)
    assert any(paused in row and "Tạm dừng tính hạn" in row and urgency == "none" for urgency, row in rows)
    assert "Quá hạn" in page(reception, "/cong-viec/?overdue=1") and late in page(reception, "/cong-viec/?overdue=1")

    post(head, f"/giam-sat/ho-so/{paused}/tiep-tuc", {"note": "Đã xuất viện"}, form_page=f"/giam-sat/ho-so/{paused}")
    case = page(head, f"/giam-sat/ho-so/{paused}")
    # Suspended 20/11, resumed 01/12: 6 working days stood still, so 30/11 moves to 08/12.
    assert "08/12/2026 23:59" in case and "Tiếp tục giải trình" in case
    # Citizens cannot reach the supervisor pages.
    assert citizen.get("/giam-sat/").status_code == 302


def test_english_is_available_and_vietnamese_is_the_default(app):
    client = app.test_client()
    assert 'lang="vi"' in page(client, "/") and "Gửi yêu cầu giải trình" in page(client, "/")
    english = page(client, "/?lang=en")
    assert 'lang="en"' in english and "Submit a request for explanation" in english
    assert "Submit a request" in page(client, "/gui-yeu-cau")  # the choice sticks for the session


def test_security_headers_on_pages(app):
    response = app.test_client().get("/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "HttpOnly" in response.headers.get("Set-Cookie", "HttpOnly")


def test_https_is_recognised_only_through_a_trusted_proxy(world):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    direct = create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)
    assert "Strict-Transport-Security" not in direct.test_client().get("/", headers=forwarded).headers
    behind_nginx = create_app(load_settings(database_url=world, secret_key="t", proxy_count=1), boot_engine=False)
    response = behind_nginx.test_client().get("/", headers=forwarded)
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in behind_nginx.test_client().get("/").headers


def test_an_incident_is_shown_to_the_supervisor_who_runs_it_again(app, monkeypatch):
    citizen = app.test_client()
    code, token, _ = citizen_submits(citizen)
    monkeypatch.setattr("giaitrinh.engine.runtime.fire_timer",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("máy chủ thư không trả lời <b>")))
    fixed = clock.get_clock()
    fixed.set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    for _ in range(timers.MAX_ATTEMPTS):
        timers.run_due(clock.now())
        fixed.set(clock.now() + timedelta(hours=2))  # past each back-off
    supervisor = login(app, "thanhtra")
    case = page(supervisor, f"/giam-sat/ho-so/{code}")
    assert "<h2>Sự cố</h2>" in case and "máy chủ thư không trả lời &lt;b&gt;" in case and "5 lần thử" in case
    assert code in page(supervisor, "/giam-sat/?show=stuck")
    action = re.search(r'action="(/giam-sat/ho-so/[^"]+/su-co/\d+/thu-lai)"', case).group(1)
    # An official of another unit may not run it again.
    other = login(app, "chuyenvien2")
    assert other.post(action, data={"_csrf": csrf(page(other, "/cong-viec/")), "note": "x"}).status_code in (303, 403)
    assert "<h2>Sự cố</h2>" in page(supervisor, f"/giam-sat/ho-so/{code}")
    monkeypatch.undo()
    post(supervisor, action, {"note": "Đã sửa cấu hình"}, form_page=f"/giam-sat/ho-so/{code}")
    assert timers.run_due(clock.now()) == 1
    case = page(supervisor, f"/giam-sat/ho-so/{code}")
    assert "<h2>Sự cố</h2>" not in case
    with db.read_only() as session:
        retried = session.execute(select(AuditEvent).where(AuditEvent.action == "incident_retried")).scalar_one()
        assert (retried.actor, retried.note) == ("thanhtra", "Đã sửa cấu hình")
    assert code in page(supervisor, "/giam-sat/?show=overdue")  # the deadline it guarded has now fired
