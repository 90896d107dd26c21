"""Who may do what: argon2, lockout, sign-out everywhere, a policy on every route, the API role
matrix, rate limits, CSRF on cookie-borne API calls, audited views of personal data,
administrators' accounts and redaction rules."""
from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from giaitrinh.config import load_settings
from giaitrinh.engine import accounts, clock, db
from giaitrinh.engine.models import ApiToken, AuditEvent, User
from giaitrinh.engine.services import admin as admin_service
from giaitrinh.web import create_app

from .helpers import CITIZEN, EXPLANATION, do, submit, to_explain
from .test_pages import csrf, login, open_task, page


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t"), boot_engine=False)


def _events(action: str) -> list[SimpleNamespace]:
    with db.read_only() as session:
        return [SimpleNamespace(actor=e.actor, after=e.after, note=e.note) for e in session.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars()]


# -- accounts ---------------------------------------------------------------------------------


def test_passwords_are_argon2id_and_old_hashes_are_upgraded_at_sign_in(world):
    with db.transaction() as session:
        user = session.execute(select(User).where(User.username == "tiepnhan")).scalar_one()
        assert user.password_hash.startswith("$argon2id$")
        # A hash from before argon2 (scrypt) still works once, and is replaced.
        import hashlib
        import os
        salt = os.urandom(16)
        digest = hashlib.scrypt(b"old-password", salt=salt, n=2**14, r=8, p=1)
        user.password_hash = f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"
    assert accounts.sign_in("tiepnhan", "old-password")
    with db.read_only() as session:
        stored = session.execute(select(User.password_hash).where(User.username == "tiepnhan")).scalar_one()
    assert stored.startswith("$argon2id$") and accounts.check_password(stored, "old-password")


def test_too_many_failed_sign_ins_lock_the_account_for_a_while(app, monkeypatch):
    client = app.test_client()
    form = page(client, "/dang-nhap")
    for _ in range(accounts.MAX_FAILED_SIGN_INS - 1):
        response = client.post("/dang-nhap", data={"_csrf": csrf(form), "username": "lanhdao", "password": "sai"})
        assert response.status_code == 401
    response = client.post("/dang-nhap", data={"_csrf": csrf(form), "username": "lanhdao", "password": "sai"})
    assert response.status_code == 429 and "tạm khóa" in response.get_data(as_text=True)
    # Locked: even the right password is refused, on the page and on the API.
    response = client.post("/dang-nhap", data={"_csrf": csrf(form), "username": "lanhdao", "password": "demo"})
    assert response.status_code == 429
    api = client.post("/api/v1/auth/token", json={"username": "lanhdao", "password": "demo"})
    assert api.status_code == 429 and int(api.headers["Retry-After"]) > 0
    assert len(_events("account_locked")) == 1
    later = clock.wall_now() + accounts.LOCKOUT + timedelta(seconds=1)
    monkeypatch.setattr(clock, "wall_now", lambda: later)
    assert client.post("/api/v1/auth/token", json={"username": "lanhdao", "password": "demo"}).status_code == 201


def test_unknown_and_disabled_users_get_the_same_answer(app):
    client = app.test_client()
    for username in ("khong-co-ai", "admin"):
        if username == "admin":
            with db.transaction() as session:
                session.execute(select(User).where(User.username == "admin")).scalar_one().is_active = False
        response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"})
        assert response.status_code == 401 and response.json["error"]["code"] == "unauthenticated"


def test_an_api_token_can_be_revoked_by_its_holder(app):
    client = app.test_client()
    token = client.post("/api/v1/auth/token", json={"username": "chuyenvien", "password": "demo"}).json["token"]
    other = client.post("/api/v1/auth/token", json={"username": "chuyenvien", "password": "demo"}).json["token"]
    assert client.delete("/api/v1/auth/token", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    with db.read_only() as session:
        row = session.execute(select(ApiToken).where(ApiToken.token_hash == accounts.hash_secret(token))).scalar_one()
        assert row.revoked_at is not None and row.token_hash != token  # stored hashed


def test_sign_out_everywhere_ends_other_sessions_and_revokes_tokens(app):
    laptop, phone = login(app, "chuyenvien"), login(app, "chuyenvien")
    token = app.test_client().post("/api/v1/auth/token", json={"username": "chuyenvien", "password": "demo"}).json
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert app.test_client().get("/api/v1/tasks", headers=bearer).status_code == 200
    html = page(phone, "/cong-viec/")
    assert phone.post("/dang-xuat-moi-noi", data={"_csrf": csrf(html)}).status_code == 302
    assert laptop.get("/cong-viec/").status_code == 302  # back to the sign-in page
    assert app.test_client().get("/api/v1/tasks", headers=bearer).status_code == 401
    with db.read_only() as session:
        assert session.execute(select(func.count()).select_from(ApiToken)
                               .where(ApiToken.revoked_at.is_(None))).scalar_one() == 0


# -- every route has a policy; the API as every role -----------------------------------------


def test_every_route_has_an_explicit_policy(app):
    from giaitrinh.web import policy

    with app.app_context():
        missing = [rule.rule for rule in app.url_map.iter_rules() if policy.of(rule.endpoint) is None]
    assert not missing, f"routes without a policy: {missing}"


def _api_routes(app) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, rule))
    return out


def _fill(rule, values: dict) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule)


def test_every_api_route_as_every_role(app, people):
    """No 5xx anywhere; anonymous callers get 401 on officials' routes; a role that is not the
    route's gets 403; an official of another unit sees nothing of this unit's case."""
    from giaitrinh.web import policy

    code = submit()["code"]
    client = app.test_client()
    tokens = {name: {"Authorization": "Bearer " + client.post("/api/v1/auth/token", json={
        "username": name, "password": "demo"}).json["token"]} for name in people}
    tokens[None] = {}
    task = client.get(f"/api/v1/tasks?request={code}", headers=tokens["tiepnhan"]).json["items"][0]["id"]
    values = {"code": code, "task_id": task, "definition_id": 1, "day": "2026-12-24", "job_id": 1, "filter_id": 1,
              "document_id": 1, "attachment_id": 1, "fmt": "pdf"}
    with app.app_context():
        routes = [(method, rule, policy.of(rule.endpoint)) for method, rule in _api_routes(app)]
    assert len(routes) >= 20
    for method, rule, kind in routes:
        if (method, rule.rule) == ("DELETE", "/api/v1/auth/token"):
            continue  # revokes the caller's own token: tested on its own above
        url = _fill(rule, values)
        for who, headers in tokens.items():
            response = client.open(url, method=method, headers=headers, json={})
            status = response.status_code
            assert status < 500, (method, url, who, status, response.get_data(as_text=True)[:300])
            if kind in ("official",) or kind.startswith("role:"):
                if who is None:
                    assert status == 401, (method, url, status)
            if kind.startswith("role:") and who is not None:
                role = kind.split(":", 1)[1]
                if not people[who].has_role(role):
                    assert status == 403, (method, url, who, status)
    # Another unit's official: this unit's task and case stay closed to them.
    other = tokens["chuyenvien2"]
    assert client.get(f"/api/v1/tasks/{task}", headers=other).status_code == 403
    assert client.post(f"/api/v1/tasks/{task}/complete", headers=other, json={"data": {"decision": "accept"}}).status_code == 403
    assert client.get(f"/api/v1/requests/{code}", headers=other).status_code in (403, 404)
    assert client.post(f"/api/v1/instances/{code}/suspend", headers=other, json={"ground": "unable"}).status_code in (403, 404)
    assert code not in client.get("/api/v1/instances", headers=other).get_data(as_text=True)


def test_a_cookie_signed_in_api_call_needs_the_csrf_header(app):
    client = login(app, "thanhtra")
    code = app.test_client().post("/api/v1/requests", json=CITIZEN).json["code"]
    response = client.post(f"/api/v1/instances/{code}/suspend", json={"ground": "unable"})
    assert response.status_code == 400
    token = csrf(page(client, "/giam-sat/"))
    response = client.post(f"/api/v1/instances/{code}/suspend", json={"ground": "unable"},
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 200


# -- rate limits -------------------------------------------------------------------------------


def test_submission_and_tracking_are_rate_limited_per_address(world):
    settings = load_settings(database_url=world, secret_key="t", rate_limits=True,
                             rate_submit="3 per minute", rate_track="5 per minute")
    app = create_app(settings, boot_engine=False)
    client = app.test_client()
    codes = [client.post("/api/v1/requests", json=CITIZEN).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    limited = client.post("/api/v1/requests", json=CITIZEN)
    assert limited.json["error"]["code"] == "rate_limited" and "Retry-After" in limited.headers
    other_address = client.post("/api/v1/requests", json=CITIZEN, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other_address.status_code == 201
    guesses = [client.get("/api/v1/requests/GT-2026-000001", headers={"X-Request-Token": f"guess{i}"}).status_code
               for i in range(6)]
    assert guesses[:5] == [404] * 5 and guesses[5] == 429
    assert client.get("/yeu-cau/GT-2026-000001?token=x").status_code == 429  # the page shares the budget


# -- personal data ---------------------------------------------------------------------------


def test_officials_looking_at_personal_data_are_recorded(app, people):
    code = submit()["code"]
    head = login(app, "lanhdao")
    page(head, f"/giam-sat/ho-so/{code}")
    page(head, f"/giam-sat/ho-so/{code}")  # twice within minutes: one entry
    views = _events("personal_data_viewed")
    assert [(e.actor, e.after["where"]) for e in views] == [("lanhdao", "case")]
    client = app.test_client()
    token = client.post("/api/v1/auth/token", json={"username": "tiepnhan", "password": "demo"}).json["token"]
    task = client.get(f"/api/v1/tasks?request={code}", headers={"Authorization": f"Bearer {token}"}).json["items"][0]
    client.get(f"/api/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {token}"})
    assert [e.actor for e in _events("personal_data_viewed")] == ["lanhdao", "tiepnhan"]


def test_an_administrators_redaction_rule_is_applied_and_shown_to_the_publisher(app, people):
    admin = login(app, "admin")
    html = page(admin, "/quan-tri/quy-tac-an")
    bad = admin.post("/quan-tri/quy-tac-an", data={"_csrf": csrf(html), "pattern": "(a+)+$", "is_regex": "1"})
    assert bad.status_code == 422 and "too slow" in bad.get_data(as_text=True)
    ok = admin.post("/quan-tri/quy-tac-an", data={"_csrf": csrf(html), "pattern": "tổ dân phố 3",
                                                    "note": "Địa bàn nhỏ, dễ nhận diện"})
    assert ok.status_code == 303
    code = submit()["code"]
    to_explain(code, people)
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    reception = login(app, "tiepnhan")
    task_page = page(reception, open_task(reception, code, "công khai"))
    assert "Quy tắc ẩn của quản trị viên" in task_page and "<del>tổ dân phố 3</del>" in task_page
    do(code, "publish", people["tiepnhan"], {"publish": True})
    published = page(app.test_client(), f"/cong-khai/{code}")
    assert "tổ dân phố 3" not in published and "[đã ẩn]" in published


# -- administrators ---------------------------------------------------------------------------


def test_administrators_create_assign_and_disable_accounts(app, people):
    admin = login(app, "admin")
    html = page(admin, "/quan-tri/")
    weak = admin.post("/quan-tri/tai-khoan", data={"_csrf": csrf(html), "username": "canbo.moi", "full_name": "Cán bộ Mới",
                                                     "password": "ngan", "role_0": "official", "unit_0": "GM"})
    assert weak.status_code == 422 and "10 to 256" in weak.get_data(as_text=True)
    created = admin.post("/quan-tri/tai-khoan", data={
        "_csrf": csrf(html), "username": "canbo.moi", "full_name": "Cán bộ Mới <script>", "password": "mat-khau-dai-1",
        "role_0": "official", "unit_0": "GM"})
    assert created.status_code == 303
    assert "Cán bộ Mới &lt;script&gt;" in page(admin, "/quan-tri/")
    newcomer = app.test_client()
    form = page(newcomer, "/dang-nhap")
    assert newcomer.post("/dang-nhap", data={"_csrf": csrf(form), "username": "canbo.moi",
                                             "password": "mat-khau-dai-1"}).status_code == 302
    assert newcomer.get("/cong-viec/").status_code == 200
    # Disabled: the session ends at once, the account and its history stay.
    admin.post("/quan-tri/tai-khoan/canbo.moi/trang-thai", data={"_csrf": csrf(html), "active": "0"})
    assert newcomer.get("/cong-viec/").status_code == 302
    assert any(u["username"] == "canbo.moi" and not u["active"] for u in admin_service.list_users(people["admin"]))
    assert [e.after["username"] for e in _events("user_disabled")] == ["canbo.moi"]
    # Only administrators reach these pages.
    assert login(app, "lanhdao").get("/quan-tri/").status_code == 403
    assert app.test_client().get("/quan-tri/").status_code == 302


# -- hostile XML --------------------------------------------------------------------------------

_HEAD = b'<?xml version="1.0"?>\n'
_DEFS = b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">'


@pytest.mark.parametrize("name, xml", [
    ("external entity", _HEAD + b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + _DEFS
     + b'<bpmn:process id="p"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process></bpmn:definitions>'),
    ("network entity", _HEAD + b'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>' + _DEFS
     + b'<bpmn:process id="p"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process></bpmn:definitions>'),
    ("billion laughs", _HEAD + b'<!DOCTYPE d [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY e "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
     b'<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">'
     b'<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;"><!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">]>' + _DEFS
     + b'<bpmn:process id="p"><bpmn:documentation>&i;</bpmn:documentation></bpmn:process></bpmn:definitions>'),
    ("deep nesting", _HEAD + b"<a>" * 400_000 + b"</a>" * 400_000),
    ("ten megabytes", _HEAD + _DEFS + b"<!--" + b"x" * (10 * 1024 * 1024) + b"--></bpmn:definitions>"),
])
def test_hostile_xml_is_refused_quickly_without_reading_files(world, name, xml):
    import resource
    import time

    from giaitrinh.engine.definitions import InvalidDefinition, parse_definition

    started = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        parsed = parse_definition(xml)
    except InvalidDefinition as exc:
        problems = " ".join(p.message for p in exc.problems)
        assert "root:" not in problems  # /etc/passwd was never read into a message
    else:  # parsed without expanding anything dangerous (it cannot be a valid lifecycle)
        assert "root:" not in str(parsed)
    assert time.perf_counter() - started < 5, name
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200 * 1024, name  # KiB


def test_hostile_xml_over_the_api_is_a_422(app):
    client = app.test_client()
    token = client.post("/api/v1/auth/token", json={"username": "thietke", "password": "demo"}).json["token"]
    body = _HEAD + b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + _DEFS + b"&x;</bpmn:definitions>"
    response = client.post("/api/v1/definitions", data=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
    assert response.status_code in (413, 422) and "root:" not in response.get_data(as_text=True)
