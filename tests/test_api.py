"""The HTTP contract of API.md: the happy path and every error code, nothing changed on a 4xx."""
import pytest
from sqlalchemy import func, select

from giaitrinh.config import load_settings
from giaitrinh.engine import db
from giaitrinh.engine.models import AuditEvent, Request, Task
from giaitrinh.web import create_app

from .helpers import CITIZEN, EXPLANATION


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t", dev_clock=True), boot_engine=False)


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(client, username):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert set(response.json) == {"error"} and response.json["error"]["message"]
    if code:
        assert response.json["error"]["code"] == code
    return response.json["error"]


def counts():
    with db.read_only() as s:
        return (s.execute(select(func.count()).select_from(AuditEvent)).scalar_one(),
                s.execute(select(func.count()).select_from(Request)).scalar_one(),
                sorted((t.id, t.status, t.assignee) for t in s.execute(select(Task)).scalars()))


def first_task(client, headers, code, step):
    items = client.get(f"/api/v1/tasks?request={code}&step={step}", headers=headers).json["items"]
    assert items, (code, step)
    return items[0]["id"]


def complete(client, headers, task_id, data):
    return client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": data}, headers=headers)


def test_the_whole_lifecycle_over_http(client):
    sub = client.post("/api/v1/requests", json=CITIZEN)
    assert sub.status_code == 201
    code, token = sub.json["code"], sub.json["token"]
    assert sub.json["deadlines"] == {"acknowledge_by": "2026-11-30T23:59:59+07:00"}
    citizen = {"X-Request-Token": token}
    view = client.get(f"/api/v1/requests/{code}", headers=citizen).json
    assert view["status"] == "received" and view["overdue"] is False and view["timeline"][0]["event"] == "submitted"

    reception, head, official = bearer(client, "tiepnhan"), bearer(client, "lanhdao"), bearer(client, "chuyenvien")
    inbox = client.get("/api/v1/tasks?scope=unit", headers=reception).json
    assert inbox["total"] == 1 and inbox["items"][0]["working_days_left"] == 5
    task = client.get(f"/api/v1/tasks/{inbox['items'][0]['id']}", headers=reception).json
    assert task["form"]["properties"]["decision"] and task["request"]["code"] == code
    assert client.post(f"/api/v1/tasks/{task['id']}/claim", headers=reception).status_code == 200
    done = complete(client, reception, task["id"], {"decision": "accept"})
    assert done.status_code == 200 and done.json["request"]["status"] == "accepted"
    assign = done.json["next_tasks"][0]
    form = client.get(f"/api/v1/tasks/{assign['id']}", headers=head).json["form"]
    assert [o["const"] for o in form["properties"]["assignee"]["oneOf"]] == ["chuyenvien"]
    explain = complete(client, head, assign["id"], {"assignee": "chuyenvien"}).json["next_tasks"][0]
    assert client.get("/api/v1/tasks?scope=mine", headers=official).json["items"][0]["id"] == explain["id"]
    approve = complete(client, official, explain["id"], {"explanation": EXPLANATION}).json["next_tasks"][0]
    publish = complete(client, head, approve["id"], {"approved": True}).json["next_tasks"][0]
    final = complete(client, reception, publish["id"], {"publish": True})
    assert final.json["request"]["status"] == "published" and final.json["next_tasks"] == []
    view = client.get(f"/api/v1/requests/{code}", headers=citizen).json
    assert view["explanation"]["content"] == EXPLANATION["content"]
    found = client.get("/api/v1/published?q=THU+HOI+DAT").json
    assert found["total"] == 1 and found["total_exact"] is True
    assert "0912 345 678" not in found["items"][0]["explanation"]["content"]
    assert client.post(f"/api/v1/requests/{code}/rating", json={"score": 5}, headers=citizen).status_code == 201


def test_bad_bodies(client):
    before = counts()
    error(client.post("/api/v1/requests", data="{not json", content_type="application/json"), 400, "invalid_json")
    error(client.post("/api/v1/requests", data="", content_type="application/json"), 400)
    error(client.post("/api/v1/requests", json=[1, 2]), 422)
    e = error(client.post("/api/v1/requests", json={**CITIZEN, "requester": {**CITIZEN["requester"], "phone": 123}}), 422,
              "validation_error")
    assert "requester.phone" in e["fields"]
    e = error(client.post("/api/v1/requests", json={"subject": "x"}), 422)
    assert {"requester", "content"} <= set(e["fields"]) or "subject" in e["fields"]
    e = error(client.post("/api/v1/requests", json={**CITIZEN, "unit": "ZZ"}), 422)
    assert "unit" in e["fields"]
    e = error(client.post("/api/v1/requests", json={**CITIZEN, "content": "x" * 30000}), 422)
    assert "content" in e["fields"]
    error(client.post("/api/v1/requests", data="x" * (2 * 1024 * 1024), content_type="application/json"), 413, "too_large")
    e = error(client.post("/api/v1/requests", json={**CITIZEN, "channel": "in_person"}), 403)
    assert counts() == before


def test_tracking_errors(client):
    sub = client.post("/api/v1/requests", json=CITIZEN).json
    error(client.get(f"/api/v1/requests/{sub['code']}"), 404)
    error(client.get(f"/api/v1/requests/{sub['code']}", headers={"X-Request-Token": "wrong"}), 404)
    error(client.get("/api/v1/requests/GT-2026-999999", headers={"X-Request-Token": sub["token"]}), 404)
    error(client.post(f"/api/v1/requests/{sub['code']}/rating", json={"score": 5},
                      headers={"X-Request-Token": sub["token"]}), 409)
    e = error(client.post(f"/api/v1/requests/{sub['code']}/rating", json={"score": 9},
                          headers={"X-Request-Token": sub["token"]}), 422)
    assert "score" in e["fields"]
    assert client.post(f"/api/v1/requests/{sub['code']}/withdraw", json={"reason": "Không cần nữa"},
                       headers={"X-Request-Token": sub["token"]}).json["status"] == "terminated"
    error(client.post(f"/api/v1/requests/{sub['code']}/withdraw", headers={"X-Request-Token": sub["token"]}), 409)
    error(client.get("/api/v1/published/GT-2026-000001"), 404)


def test_official_errors(client):
    sub = client.post("/api/v1/requests", json=CITIZEN).json
    error(client.get("/api/v1/tasks"), 401, "unauthenticated")
    error(client.get("/api/v1/tasks", headers={"Authorization": "Bearer nope"}), 401)
    error(client.post("/api/v1/auth/token", json={"username": "tiepnhan", "password": "sai"}), 401)
    error(client.post("/api/v1/auth/token", json={"username": "tiepnhan"}), 422)
    reception, other = bearer(client, "tiepnhan"), bearer(client, "chuyenvien2")
    error(client.get("/api/v1/tasks?scope=all", headers=reception), 403)
    error(client.get("/api/v1/tasks?scope=everything", headers=reception), 422)
    error(client.get("/api/v1/tasks?per_page=501", headers=reception), 422)
    error(client.get("/api/v1/tasks?overdue=maybe", headers=reception), 422)
    task_id = first_task(client, reception, sub["code"], "receive")
    error(client.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000", headers=reception), 404)
    error(client.get(f"/api/v1/tasks/{task_id}", headers=other), 403)
    error(complete(client, other, task_id, {"decision": "accept"}), 403)
    error(client.get(f"/api/v1/requests/{sub['code']}", headers=other), 403)
    before = counts()
    e = error(complete(client, reception, task_id, {"decision": "refuse"}), 422)
    assert "ground" in e["fields"]
    e = error(complete(client, reception, task_id, {"decision": "maybe"}), 422)
    assert "decision" in e["fields"]
    e = error(client.post(f"/api/v1/tasks/{task_id}/complete", json={"decision": "accept"}, headers=reception), 422)
    assert "data" in e["fields"]
    error(client.post(f"/api/v1/tasks/{task_id}/complete", data="{", content_type="application/json", headers=reception), 400)
    assert counts() == before
    assert complete(client, reception, task_id, {"decision": "accept"}).status_code == 200
    error(complete(client, reception, task_id, {"decision": "accept"}), 409, "conflict")
    error(client.post(f"/api/v1/tasks/{task_id}/claim", headers=reception), 409)
    error(client.get("/api/v1/escalations", headers=reception), 403)
    error(client.get("/api/v1/instances", headers=reception), 403)
    error(client.get("/api/v1/definitions", headers=reception), 403)
    error(client.delete("/api/v1/requests"), 405)
    error(client.get("/api/v1/nothing-here"), 404)


def test_dev_clock_fires_due_timers_and_never_goes_back(client):
    sub = client.post("/api/v1/requests", json=CITIZEN).json
    moved = client.post("/api/v1/dev/clock", json={"now": "2026-12-01T08:00:00+07:00"})
    assert moved.status_code == 200 and moved.json["fired"] == 1
    assert moved.json["now"].startswith("2026-12-01T08:00:00")
    view = client.get(f"/api/v1/requests/{sub['code']}", headers={"X-Request-Token": sub["token"]}).json
    assert view["overdue"] is True and view["timeline"][-1]["event"] == "escalated"
    assert client.post("/api/v1/dev/clock", json={"now": "2026-12-01T08:00:00+07:00"}).json["fired"] == 0
    error(client.post("/api/v1/dev/clock", json={"now": "2026-11-01T08:00:00+07:00"}), 409)
    error(client.post("/api/v1/dev/clock", json={"now": "tomorrow"}), 422)
    error(client.post("/api/v1/dev/clock", json={"now": "2026-12-02T08:00:00"}), 422)
    supervisor = bearer(client, "thanhtra")
    escalations = client.get("/api/v1/escalations?open=true", headers=supervisor).json["items"]
    assert [(e["request_code"], e["step"], e["level"], e["owner_role"]) for e in escalations] == [
        (sub["code"], "receive", 1, "head")]
    overdue = client.get("/api/v1/instances?overdue=true", headers=supervisor).json
    assert [i["code"] for i in overdue["items"]] == [sub["code"]]
    stuck = client.get("/api/v1/instances?stuck=true", headers=supervisor).json
    assert [i["code"] for i in stuck["items"]] == [sub["code"]]
    head_inbox = client.get("/api/v1/tasks?step=escalate", headers=bearer(client, "lanhdao")).json
    assert head_inbox["total"] == 1


def test_dev_clock_absent_without_the_setting(world):
    app = create_app(load_settings(database_url=world, secret_key="t", dev_clock=False), boot_engine=False)
    error(app.test_client().post("/api/v1/dev/clock", json={"now": "2027-01-01T00:00:00+07:00"}), 404)


def test_suspend_and_resume_over_http(client):
    sub = client.post("/api/v1/requests", json=CITIZEN).json
    head = bearer(client, "lanhdao")
    error(client.post(f"/api/v1/instances/{sub['code']}/suspend", json={"ground": "bored"}, headers=head), 422)
    assert client.post(f"/api/v1/instances/{sub['code']}/suspend", json={"ground": "unable"},
                       headers=head).json["status"] == "suspended"
    error(client.post(f"/api/v1/instances/{sub['code']}/suspend", json={"ground": "unable"}, headers=head), 409)
    client.post("/api/v1/dev/clock", json={"now": "2026-11-27T09:00:00+07:00"})
    resumed = client.post(f"/api/v1/instances/{sub['code']}/resume", headers=head).json
    # Suspended 20/11, resumed 27/11: four working days stood still (23, 25, 26, 27; 24/11 is a holiday),
    # so the acknowledgement deadline moves from 30/11 by four working days to 04/12.
    assert resumed["status"] == "received"
    assert resumed["deadlines"]["acknowledge_by"] == "2026-12-04T23:59:59+07:00"


def test_definitions_upload_validate_deploy(client):
    designer = bearer(client, "thietke")
    listed = client.get("/api/v1/definitions", headers=designer).json
    assert [(d["key"], d["version"], d["status"]) for d in listed["items"]] == [("giai_trinh", 1, "deployed")]
    e = error(client.post("/api/v1/definitions", data=b"<bpmn:definitions", headers={**designer, "Content-Type": "application/xml"}),
              422, "invalid_bpmn")
    assert e["problems"][0]["line"] == 1
    from giaitrinh.config import PROCESSES_DIR
    xml = (PROCESSES_DIR / "giai_trinh.bpmn").read_bytes()
    same = client.post("/api/v1/definitions", data=xml, headers={**designer, "Content-Type": "application/xml"})
    assert same.status_code == 200 and same.json["version"] == 1
    changed = xml.replace(b'name="period.explain_days" value="15"', b'name="period.explain_days" value="10"')
    assert changed != xml
    new = client.post("/api/v1/definitions", data=changed, headers={**designer, "Content-Type": "application/xml"})
    assert new.status_code == 201 and new.json["status"] == "draft" and new.json["version"] == 2
    broken = changed.replace(b"decision == 'accept'", b"__import__('os')")
    e = error(client.post("/api/v1/definitions", data=broken, headers={**designer, "Content-Type": "application/xml"}), 422)
    assert any(p.get("element_id") and p.get("line") for p in e["problems"])
    old = client.post("/api/v1/requests", json=CITIZEN).json
    assert client.post(f"/api/v1/definitions/{new.json['id']}/deploy", headers=designer).json["status"] == "deployed"
    error(client.post("/api/v1/definitions/999/deploy", headers=designer), 404)
    # Running requests keep their version; new ones get the new periods.
    reception = bearer(client, "tiepnhan")
    for code in (old["code"], client.post("/api/v1/requests", json=CITIZEN).json["code"]):
        complete(client, reception, first_task(client, reception, code, "receive"), {"decision": "accept"})
    with db.read_only() as s:
        deadlines = [r.deadlines["explain_by"] for r in s.execute(select(Request).order_by(Request.id)).scalars()]
    assert deadlines == ["2026-12-07T23:59:59+07:00", "2026-11-30T23:59:59+07:00"]


def test_calendar_overrides_by_an_administrator(client):
    admin = bearer(client, "admin")
    error(client.put("/api/v1/calendar/2026-11-23", json={"kind": "day_off"}, headers=bearer(client, "tiepnhan")), 403)
    error(client.put("/api/v1/calendar/23-11-2026", json={"kind": "day_off"}, headers=admin), 422)
    assert client.put("/api/v1/calendar/2026-11-23", json={"kind": "day_off", "note": "Nghỉ bù"}, headers=admin).status_code == 200
    sub = client.post("/api/v1/requests", json=CITIZEN).json
    assert sub["deadlines"]["acknowledge_by"] == "2026-12-01T23:59:59+07:00"
    month = client.get("/api/v1/calendar?month=2026-11").json
    assert {"day": "2026-11-23", "working": False, "name": "Nghỉ bù"} in month["days"]
    assert client.delete("/api/v1/calendar/2026-11-23", headers=admin).status_code == 204
    error(client.delete("/api/v1/calendar/2026-11-23", headers=admin), 404)


def test_openapi_document_lists_the_contract(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    for path in ("/api/v1/requests", "/api/v1/requests/{code}", "/api/v1/tasks", "/api/v1/tasks/{id}/complete",
                 "/api/v1/escalations", "/api/v1/instances", "/api/v1/published", "/api/v1/definitions",
                 "/api/v1/dev/clock"):
        assert path in doc["paths"], path
    # Every API route of the app is documented.
    app_paths = {str(rule).replace("<int:", "{").replace("<", "{").replace(">", "}")
                 for rule in client.application.url_map.iter_rules() if str(rule).startswith("/api/")}
    documented = {p.replace("{code}", "{x}").replace("{id}", "{x}").replace("{day}", "{x}") for p in doc["paths"]}
    normalised = {p.replace("{code}", "{x}").replace("{task_id}", "{x}").replace("{definition_id}", "{x}").replace("{day}", "{x}")
                  for p in app_paths}
    assert normalised - {"/api/v1/openapi.json"} <= documented
