"""The supervisor pages and API: forms post through CSRF, each action audited, unit scope holds."""
import re

import pytest
from sqlalchemy import select

from giaitrinh.config import load_settings
from giaitrinh.engine import clock, db, timers
from giaitrinh.engine.models import AuditEvent, SavedFilter
from giaitrinh.web import create_app

from .helpers import submit, to_explain
from .test_pages import csrf, login, page, post


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t", dev_clock=True), boot_engine=False)


def bearer(client, username):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"})
    return {"Authorization": f"Bearer {response.json['token']}"}


def actions(code):
    with db.read_only() as session:
        return [(e.action, e.actor, e.note) for e in session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
                if e.action in ("reassigned", "urged", "terminated", "token_moved", "candidate_added")]


def test_instance_list_filters_saves_and_shares_a_filter(app, people):
    late = submit()["code"]
    fresh_day = clock.parse_instant("2026-11-27T09:00:00+07:00")
    clock.get_clock().set(fresh_day)
    fresh = submit()["code"]
    clock.get_clock().set(clock.parse_instant("2026-12-01T08:00:00+07:00"))
    timers.run_due()
    supervisor = login(app, "thanhtra")
    html = page(supervisor, "/giam-sat/ho-so/?reason=task_overdue")
    assert late in html and fresh not in html and "Công việc quá hạn" in html
    bad = page(supervisor, "/giam-sat/ho-so/?received_from=hôm-qua")
    assert 'data-field="received_from"' in bad
    post(supervisor, "/giam-sat/bo-loc", {"name": "Quá hạn tiếp nhận", "reason": "task_overdue",
                                         "shared_with_role": "head"}, form_page="/giam-sat/ho-so/")
    with db.read_only() as session:
        saved = session.execute(select(SavedFilter)).scalar_one()
        assert (saved.owner, saved.params, saved.shared_with_role) == ("thanhtra", {"reason": "task_overdue"}, "head")
        saved_id = saved.id
    head = login(app, "lanhdao")
    listing = page(head, "/giam-sat/ho-so/")
    assert "Quá hạn tiếp nhận" in listing
    applied = page(head, f"/giam-sat/ho-so/?saved={saved_id}")
    assert late in applied and fresh not in applied
    # Only its owner may delete it.
    response = head.post(f"/giam-sat/bo-loc/{saved_id}/xoa", data={"_csrf": csrf(listing)})
    assert response.status_code == 303
    assert "Quá hạn tiếp nhận" in page(head, "/giam-sat/ho-so/")


def test_case_page_actions_are_audited_with_their_reason(app, people):
    code = submit()["code"]
    to_explain(code, people)
    supervisor = login(app, "thanhtra")
    case = page(supervisor, f"/giam-sat/ho-so/{code}")
    assert 'id="case-diagram"' in case and f'/giam-sat/ho-so/{code}/so-do.json' in case
    task = re.search(r'<li data-task="([^"]+)" data-step="explain">', case).group(1)
    diagram = supervisor.get(f"/giam-sat/ho-so/{code}/so-do.json").json
    assert "explain" in diagram["active"] and "assign" in diagram["completed"]
    # A reason is required: without one nothing happens and the page says why.
    response = supervisor.post(f"/giam-sat/ho-so/{code}/don-doc", data={"_csrf": csrf(case), "task_id": task})
    assert response.status_code == 303
    assert "Lý do từ 3 đến 5000 ký tự" in page(supervisor, f"/giam-sat/ho-so/{code}")
    post(supervisor, f"/giam-sat/ho-so/{code}/don-doc", {"task_id": task, "note": "Khẩn trương hoàn thành"},
         form_page=f"/giam-sat/ho-so/{code}")
    official = login(app, "chuyenvien")
    assert "Khẩn trương hoàn thành" in page(official, f"/cong-viec/{task}")
    post(supervisor, f"/giam-sat/ho-so/{code}/them-nguoi", {"task_id": task, "username": "lanhdao",
                                                             "note": "Lãnh đạo cùng theo dõi"},
         form_page=f"/giam-sat/ho-so/{code}")
    # The move-token form is for administrators only.
    assert supervisor.post(f"/giam-sat/ho-so/{code}/chuyen-buoc",
                           data={"_csrf": csrf(case), "to": "assign", "note": "Thử"}).status_code == 403
    admin = login(app, "admin")
    admin_case = page(admin, f"/giam-sat/ho-so/{code}")
    assert 'name="to"' in admin_case and '<option value="assign">' in admin_case
    post(admin, f"/giam-sat/ho-so/{code}/chuyen-buoc", {"to": "assign", "note": "Phân công lại từ đầu"},
         form_page=f"/giam-sat/ho-so/{code}")
    post(supervisor, f"/giam-sat/ho-so/{code}/dinh-chi", {"ground": "withdrawn", "note": "Người yêu cầu rút tại trụ sở"},
         form_page=f"/giam-sat/ho-so/{code}")
    assert actions(code) == [
        ("urged", "thanhtra", "Khẩn trương hoàn thành"),
        ("candidate_added", "thanhtra", "Lãnh đạo cùng theo dõi"),
        ("token_moved", "admin", "Phân công lại từ đầu"),
        ("terminated", "thanhtra", "Người yêu cầu rút toàn bộ yêu cầu giải trình (khoản 2 Điều 14 NĐ 59/2019). "
                                   "Người yêu cầu rút tại trụ sở"),
    ]
    final = page(supervisor, f"/giam-sat/ho-so/{code}")
    assert "Đã đình chỉ" in final and "Phân công lại từ đầu" in final  # the trail shows notes


def test_another_units_official_cannot_reach_the_case_console(app, people):
    code = submit()["code"]
    other = login(app, "chuyenvien2")
    assert other.get(f"/giam-sat/ho-so/{code}").status_code == 403
    assert other.get(f"/giam-sat/ho-so/{code}/so-do.json").status_code == 403
    html = page(other, "/cong-viec/")
    assert other.post(f"/giam-sat/ho-so/{code}/don-doc", data={"_csrf": csrf(html), "note": "Đôn đốc"}).status_code == 303
    assert actions(code) == []


def test_bulk_without_javascript_reports_each_case(app, people):
    a, b = submit()["code"], submit()["code"]
    post_b = submit(unit="GM")["code"]
    supervisor = login(app, "thanhtra")
    html = page(supervisor, "/giam-sat/ho-so/")
    response = supervisor.post("/giam-sat/hang-loat", data={"_csrf": csrf(html), "action": "urge", "note": "Khẩn",
                                                            "codes": [a, post_b, b]})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "Thành công: 2 · Không thực hiện được: 1" in text
    everything = supervisor.post("/giam-sat/hang-loat", data={"_csrf": csrf(html), "action": "urge", "note": "Lần hai",
                                                              "all_matching": "1", "f_closed": "false"})
    assert "Thành công: 2 · Không thực hiện được: 0" in everything.get_data(as_text=True)
    assert [n for _a, _u, n in actions(a)] == ["Khẩn", "Khẩn", "Lần hai", "Lần hai"]


def test_api_console_endpoints(app, people):
    code = submit()["code"]
    to_explain(code, people)
    client = app.test_client()
    boss = bearer(client, "thanhtra")
    listed = client.get("/api/v1/instances?step=explain&assignee=chuyenvien", headers=boss).json
    assert [i["code"] for i in listed["items"]] == [code] and listed["items"][0]["stuck_reasons"] == []
    assert client.get("/api/v1/instances?reason=nope", headers=boss).status_code == 422
    assert client.get(f"/api/v1/instances/{code}/diagram", headers=boss).json["active"][0] == "explain"
    assert client.post(f"/api/v1/instances/{code}/urge", json={}, headers=boss).status_code == 422
    assert client.post(f"/api/v1/instances/{code}/urge", json={"note": "Nhanh lên"}, headers=boss).json["to"] == "chuyenvien"
    assert client.post(f"/api/v1/instances/{code}/move", json={"to": "assign", "note": "xxx"},
                       headers=boss).status_code == 403
    bulk = client.post("/api/v1/instances/bulk", json={"action": "urge", "codes": [code, "GT-0-0"], "note": "Gấp"},
                       headers=boss).json
    assert (bulk["succeeded"], bulk["failed"]) == (1, 1)
    saved = client.post("/api/v1/saved-filters", json={"name": "Giải trình", "params": {"step": "explain"}}, headers=boss)
    assert saved.status_code == 201
    assert [f["name"] for f in client.get("/api/v1/saved-filters", headers=boss).json["items"]] == ["Giải trình"]
    assert client.delete(f"/api/v1/saved-filters/{saved.json['id']}", headers=boss).status_code == 204
    board = client.get("/api/v1/dashboard", headers=boss).json
    assert board["units"][0]["unit"] == "MX" and board["units"][0]["own"]["open"] == 1
    heat = client.get("/api/v1/heatmap", headers=boss).json
    assert heat["nodes"]["explain"]["open"] == 1
    trail = client.get(f"/api/v1/instances/{code}/trail", headers=boss).json["items"]
    assert trail[-1]["action"] == "urged"
    # The page's script calls the bulk endpoint with the session cookie: the CSRF header is required.
    browser = login(app, "thanhtra")
    html = page(browser, "/giam-sat/ho-so/")
    body = {"action": "urge", "codes": [code], "note": "Qua trình duyệt"}
    assert browser.post("/api/v1/instances/bulk", json=body).status_code == 400
    ok = browser.post("/api/v1/instances/bulk", json=body, headers={"X-CSRF-Token": csrf(html)})
    assert ok.status_code == 200 and ok.json["succeeded"] == 1
