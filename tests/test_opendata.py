"""Open data: the change feed for the national database (cursor, redaction, rights) and Open311."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import func, select

from giaitrinh import demo
from giaitrinh.engine import db
from giaitrinh.engine.accounts import Actor
from giaitrinh.engine.errors import Forbidden, NotFound, ValidationFailed
from giaitrinh.engine.models import AuditEvent
from giaitrinh.engine.services import opendata, requests

from .helpers import CITIZEN, EXPLANATION, do, submit, to_explain

PERSONAL = ("Nguyễn Văn An", "0912 345 678", "an@example.vn", "12 Trần Phú")


def publish(code, people):
    to_explain(code, people)
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})
    do(code, "publish", people["tiepnhan"], {"publish": True})


@pytest.fixture
def cases(world, people, fixed_clock):
    """A published case, one explained but not published, one refused, one only received, one in GM."""
    published = submit(subject="Ông Nguyễn Văn An (0912 345 678) hỏi về việc thu hồi đất")
    publish(published["code"], people)
    fixed_clock.advance(days=1)
    explained = submit()
    to_explain(explained["code"], people)
    do(explained["code"], "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(explained["code"], "approve", people["lanhdao"], {"approved": True})
    refused = submit()
    do(refused["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    received = submit(subject="Nguyễn Văn An đề nghị giải trình")
    other = submit(unit="GM")
    requests.rate(published["code"], published["token"], 1, "Ông An không hài lòng, gọi 0912 345 678")
    return {"published": published, "explained": explained, "refused": refused, "received": received, "gm": other}


def all_changes(actor, limit):
    items, cursor, pages = [], None, 0
    while True:
        page = opendata.export_changes(actor, since=cursor, limit=limit)
        items += page["items"]
        pages += 1
        assert page["next"] == (page["items"][-1]["id"] if page["items"] else (cursor or "0"))
        cursor = page["next"]
        if not page["has_more"]:
            return items, cursor, pages


def test_the_feed_returns_every_change_once_in_order(cases, people):
    exporter = people["ketnoi"]
    items, cursor, pages = all_changes(exporter, limit=4)
    ids = [int(i["id"]) for i in items]
    assert ids == sorted(set(ids)) and pages > 2
    with db.read_only() as session:
        expected = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.request_id.is_not(None), AuditEvent.action.in_(opendata.CHANGE_EVENTS))).scalar_one()
    assert len(items) == expected
    assert [i["event"] for i in items if i["case"]["code"] == cases["published"]["code"]] == [
        "submitted", "accepted", "assigned", "approved", "explained", "published", "rated"]
    # Nothing new: the same cursor comes back, with nothing.
    again = opendata.export_changes(exporter, since=cursor)
    assert again == {"items": [], "next": cursor, "has_more": False}
    # A later change comes once, after the cursor.
    requests.withdraw(cases["received"]["code"], cases["received"]["token"])
    later = opendata.export_changes(exporter, since=cursor)
    assert [(i["event"], i["case"]["code"], i["case"]["status"]) for i in later["items"]] == [
        ("withdrawn", cases["received"]["code"], "terminated")]


def test_the_feed_carries_no_personal_data(cases, people):
    items, _, _ = all_changes(people["admin"], limit=500)
    text = json.dumps(items, ensure_ascii=False)
    for secret in PERSONAL:
        assert secret not in text
    for item in items:
        assert not {"requester", "requester_name", "requester_phone", "requester_email", "requester_address",
                    "content", "rating_comment", "comment", "note"} & (set(item) | set(item["case"]))
    by_code = {i["case"]["code"]: i["case"] for i in items}
    assert "[đã ẩn]" in by_code[cases["received"]["code"]]["subject"]  # unpublished: the subject redacted
    published = by_code[cases["published"]["code"]]
    assert published["explanation"]["legal_basis"] == EXPLANATION["legal_basis"]
    assert "explanation" not in by_code[cases["explained"]["code"]]  # not published yet
    assert published["explained_on_time"] is True and published["rating_score"] == 1
    assert by_code[cases["refused"]["code"]]["refusal_ground"] == "secret"


def test_export_rights_and_unit_scope(cases, people):
    for name in ("thanhtra", "lanhdao", "chuyenvien", "tiepnhan"):
        with pytest.raises(Forbidden):
            opendata.export_changes(people[name])
    gm_only = Actor("ketnoi-gm", "", {"exporter": frozenset({"GM"})})
    codes = {i["case"]["code"] for i in opendata.export_changes(gm_only, limit=1000)["items"]}
    assert codes == {cases["gm"]["code"]}
    for bad in ("abc", "-1", "1" * 19, "1.5"):
        with pytest.raises(ValidationFailed) as caught:
            opendata.export_changes(people["ketnoi"], since=bad)
        assert "since" in caught.value.fields


def test_open311_lists_published_cases_only(cases, fixed_clock):
    services = opendata.open311_services()
    assert [s["service_code"] for s in services] == ["giai_trinh"]
    assert services[0]["metadata"] is False and services[0]["type"] == "realtime"
    listed = opendata.open311_requests()
    assert [r["service_request_id"] for r in listed] == [cases["published"]["code"]]
    (item,) = listed
    assert item["status"] == "closed" and item["service_code"] == "giai_trinh"
    assert item["service_name"] == "Yêu cầu giải trình"
    assert item["agency_responsible"] == "UBND phường Mỹ Xuyên"
    assert item["requested_datetime"] == "2026-11-20T09:00:00+07:00"
    assert item["expected_datetime"] == "2026-12-07T23:59:59+07:00"  # 15 days from 20/11: Saturday 5/12, rolled on
    assert "[đã ẩn]" in item["description"] and "thu hồi đất" in item["description"]
    text = json.dumps(listed, ensure_ascii=False)
    for secret in PERSONAL:
        assert secret not in text
    assert set(item) <= {"service_request_id", "status", "status_notes", "service_name", "service_code",
                         "description", "agency_responsible", "service_notice", "requested_datetime",
                         "updated_datetime", "expected_datetime"}


def test_open311_filters(cases, fixed_clock):
    code = cases["published"]["code"]
    assert opendata.open311_requests(status="closed")[0]["service_request_id"] == code
    assert opendata.open311_requests(status="open") == []
    assert opendata.open311_requests(service_code="giai_trinh")[0]["service_request_id"] == code
    assert opendata.open311_requests(service_code="phan_anh") == []
    ids = f"{code},{cases['explained']['code']},{cases['received']['code']}"
    assert [r["service_request_id"] for r in opendata.open311_requests(service_request_id=ids)] == [code]
    assert opendata.open311_requests(start_date="2026-11-21T00:00:00+07:00") == []
    assert len(opendata.open311_requests(start_date="2026-11-20", end_date="2026-11-20T23:59:59+07:00")) == 1
    assert opendata.open311_requests(end_date="2026-11-19T00:00:00Z") == []
    # Without dates, the last 90 days (the specification's default).
    fixed_clock.set(datetime.fromisoformat("2027-03-01T00:00:00+07:00"))
    assert opendata.open311_requests() == []
    assert len(opendata.open311_requests(start_date="2026-01-01")) == 1
    for kwargs, field in (({"status": "pending"}, "status"), ({"start_date": "yesterday"}, "start_date"),
                          ({"start_date": "2026-12-01", "end_date": "2026-11-01"}, "end_date"),
                          ({"start_date": "0001-01-01T00:00:00+01:00"}, "start_date")):
        with pytest.raises(ValidationFailed) as caught:
            opendata.open311_requests(**kwargs)
        assert field in caught.value.fields


def test_open311_one_request(cases):
    (one,) = opendata.open311_request(cases["published"]["code"])
    assert one["service_request_id"] == cases["published"]["code"]
    for name in ("explained", "refused", "received"):
        with pytest.raises(NotFound):
            opendata.open311_request(cases[name]["code"])
    assert CITIZEN["unit"] == "MX" and demo.USERS[-1][0] == "ketnoi"
