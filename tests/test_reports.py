"""The monthly report, the yearly evaluation and unhappy ratings, from a month of real cases.

November 2026 in ward MX and its child unit MX1 (and one case in GM that must not count), every
case taken through the real services with the clock moved by hand. 24/11/2026 is a holiday
(Vietnam Culture Day), so an acceptance on Wednesday 25/11 of a request received on Friday 20/11
took two working days, not three.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from openpyxl import load_workbook

from giaitrinh import demo
from giaitrinh.engine import clock, db
from giaitrinh.engine.errors import Forbidden, NotFound, ValidationFailed
from giaitrinh.engine.models import Request, Unit
from giaitrinh.engine.services import reports, requests, supervision
from sqlalchemy import select

from .helpers import CITIZEN, EXPLANATION, do, submit
from .test_migrations import empty_url  # noqa: F401 - fixture: an empty SQLite or PostgreSQL database

LOCAL = "+07:00"


def at(fixed_clock, text):
    fixed_clock.set(datetime.fromisoformat(text + LOCAL))


def explain_and_approve(code, people):
    do(code, "explain", people["chuyenvien"], {"explanation": EXPLANATION})
    do(code, "approve", people["lanhdao"], {"approved": True})


def build_month(fixed_clock) -> tuple[dict, dict]:
    """The cases of November 2026; returns (people, {name: submission})."""
    with db.transaction() as session:
        session.add(Unit(code="MX1", name="Tổ dân phố 3, phường Mỹ Xuyên", parent_code="MX"))
    # Roles held in MX cover MX1 once it exists: build the actors after it.
    people = {username: demo._actor(username) for username, _, _ in demo.USERS}
    at(fixed_clock, "2026-11-20T09:00:00")  # Friday
    cases = {name: submit(unit=unit) for name, unit in
             [("A", "MX"), ("B", "MX"), ("E", "MX"), ("F", "MX"), ("J", "MX"),
              ("C", "MX1"), ("D", "MX1"), ("G", "MX1"), ("H", "GM")]}
    at(fixed_clock, "2026-11-21T10:00:00")
    requests.withdraw(cases["E"]["code"], cases["E"]["token"], "Đã được giải quyết")
    at(fixed_clock, "2026-11-23T10:00:00")  # Monday: one working day after the Friday
    for name in ("A", "F", "G"):
        do(cases[name]["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    do(cases["C"]["code"], "receive", people["tiepnhan"], {"decision": "refuse", "ground": "secret"})
    for name in ("A", "G"):
        do(cases[name]["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    at(fixed_clock, "2026-11-24T10:00:00")  # the holiday
    supervision.suspend(cases["F"]["code"], people["lanhdao"], "unable")
    at(fixed_clock, "2026-11-25T10:00:00")  # Wednesday: two working days after the Friday
    do(cases["B"]["code"], "receive", people["tiepnhan"], {"decision": "accept"})
    do(cases["B"]["code"], "assign", people["lanhdao"], {"assignee": "chuyenvien"})
    explain_and_approve(cases["A"]["code"], people)
    at(fixed_clock, "2026-11-26T10:00:00")  # Thursday: three working days after the Friday
    do(cases["D"]["code"], "receive", people["tiepnhan"], {"decision": "redirect", "redirect_to": "Sở Xây dựng"})
    do(cases["A"]["code"], "publish", people["tiepnhan"], {"publish": True})
    requests.rate(cases["A"]["code"], cases["A"]["token"], 5, "Rõ ràng")
    at(fixed_clock, "2026-12-01T10:00:00")
    do(cases["G"]["code"], "explain", people["chuyenvien"],
       {"extend": {"days": 10, "reason": "Cần xác minh hồ sơ địa chính qua nhiều thời kỳ."}})
    cases["K"] = submit(unit="MX")  # December: not in November's report
    at(fixed_clock, "2026-12-11T10:00:00")  # B's deadline was Thursday 10/12
    explain_and_approve(cases["B"]["code"], people)
    requests.rate(cases["B"]["code"], cases["B"]["token"], 2, "Trả lời chậm, chưa rõ căn cứ")
    at(fixed_clock, "2026-12-15T10:00:00")  # G's deadline, extended by 10 days, is 18/12
    explain_and_approve(cases["G"]["code"], people)
    requests.rate(cases["G"]["code"], cases["G"]["token"], 4)
    return people, cases


@pytest.fixture
def month(world, fixed_clock):
    return build_month(fixed_clock)


def test_the_facts_are_written_when_they_happen(month):
    _, cases = month
    with db.read_only() as session:
        rows = {name: session.execute(select(Request).where(Request.code == c["code"])).scalar_one()
                for name, c in cases.items()}
        assert rows["B"].ack_working_days == 2  # Monday 23/11 and Wednesday 25/11; the holiday is not worked
        assert rows["D"].ack_working_days == 3 and rows["D"].decision == "redirect"
        assert rows["C"].decision == "refuse" and rows["C"].refusal_ground == "secret"
        assert rows["A"].explain_due_at == datetime.fromisoformat("2026-12-08T23:59:59+07:00")
        assert rows["G"].explain_due_at == datetime.fromisoformat("2026-12-18T23:59:59+07:00")
        assert rows["B"].explain_due_at == datetime.fromisoformat("2026-12-10T23:59:59+07:00")
        assert [rows[n].explain_days for n in "ABG"] == [2, 16, 22]
        assert rows["E"].decision is None and rows["E"].status == "terminated"


def test_monthly_report_figures(month):
    people, _ = month
    report = reports.monthly(people["thanhtra"], "MX", "2026-11")
    assert report["units"] == ["MX", "MX1"]
    expected = {"received": 8, "accepted": 4, "refused": 1, "redirected": 1, "explained": 3,
                "explained_on_time": 2, "explained_late": 1, "on_time_rate": 66.7, "extensions": 1,
                "suspensions": 1, "withdrawals": 1, "open_at_end": 4, "satisfaction_count": 3,
                "avg_working_days_to_acknowledge": 1.5,  # (1 + 2 + 1 + 1 + 1 + 3) / 6
                "avg_days_to_explain": 13.33,  # (2 + 16 + 22) / 3
                "satisfaction_avg": 3.67}
    assert {k: report[k] for k in expected} == expected
    assert report["satisfaction_distribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    assert report["refused_by_ground"]["secret"] == 1 and sum(report["refused_by_ground"].values()) == 1
    assert report["period"] == {"from": "2026-11-01", "to": "2026-11-30"}
    assert set(report["definitions"]) >= {"cohort", "on_time", "acknowledge", "explain", "open"}


def test_a_parent_unit_rolls_up_its_children(month):
    people, _ = month
    report = reports.monthly(people["lanhdao"], "MX", "2026-11")
    own, child = report["breakdown"]
    assert (own["unit"], own["scope"], child["unit"], child["scope"]) == ("MX", "own", "MX1", "subtree")
    assert (own["received"], child["received"]) == (5, 3)
    assert (own["open_at_end"], child["open_at_end"]) == (3, 1)  # B, F, J; G
    assert own["avg_working_days_to_acknowledge"] == 1.33 and child["avg_working_days_to_acknowledge"] == 1.67
    for key in ("received", "accepted", "refused", "redirected", "explained_on_time", "explained_late",
                "extensions", "suspensions", "withdrawals", "open_at_end", "satisfaction_count"):
        assert report[key] == own[key] + child[key], key
    alone = reports.monthly(people["lanhdao"], "MX1", "2026-11")
    assert alone["received"] == 3 and alone["explained_on_time"] == 1 and alone["breakdown"][0]["received"] == 3
    # December holds only K; GM holds only H.
    assert reports.monthly(people["admin"], "MX", "2026-12")["received"] == 1
    assert reports.monthly(people["admin"], "GM", "2026-11")["received"] == 1


def test_reports_are_unit_scoped(month):
    people, _ = month
    with pytest.raises(Forbidden):
        reports.monthly(people["chuyenvien2"], "MX", "2026-11")  # an official of GM
    with pytest.raises(Forbidden):
        reports.monthly(people["chuyenvien"], "MX", "2026-11")  # an official, not a supervisor or head
    with pytest.raises(Forbidden):
        reports.monthly(people["thanhtra"], "GM", "2026-11")  # MX's supervisor, not GM's
    with pytest.raises(Forbidden):
        reports.yearly(people["chuyenvien2"], "MX", 2026)
    with pytest.raises(Forbidden):
        reports.unhappy_ratings(people["chuyenvien2"], "MX")
    with pytest.raises(NotFound):
        reports.monthly(people["admin"], "XX", "2026-11")
    with pytest.raises(ValidationFailed) as caught:
        reports.monthly(people["admin"], "MX", "2026-13")
    assert "month" in caught.value.fields
    assert [code for code, _ in reports.report_units(people["thanhtra"])] == ["MX", "MX1"]


def test_xlsx_and_csv_hold_the_same_figures(month):
    people, _ = month
    content, media_type, filename = reports.monthly_file(people["thanhtra"], "MX", "2026-11", "xlsx")
    assert filename == "bao-cao-giai-trinh-MX-2026-11.xlsx" and "spreadsheetml" in media_type
    book = load_workbook(io.BytesIO(content))
    assert book.sheetnames == ["Báo cáo tháng", "Ghi chú", "Biểu đồ"]
    sheet = book["Báo cáo tháng"]
    rows = [r for r in sheet.iter_rows(values_only=True) if any(v is not None for v in r)]
    header = next(r for r in rows if r[0] == "Mã đơn vị")
    data = [dict(zip(header, r)) for r in rows[rows.index(header) + 1:]]
    assert [(r["Mã đơn vị"], r["Đơn vị"].split(":")[0]) for r in data] == [
        ("MX", "Tổng cộng"), ("MX", "UBND phường Mỹ Xuyên (trực tiếp)"),
        ("MX1", "Tổ dân phố 3, phường Mỹ Xuyên (gồm đơn vị trực thuộc)")]
    total = data[0]
    assert total["Giải trình đúng hạn"] == 2 and total["Giải trình quá hạn"] == 1
    assert total["Tiếp nhận"] == 8 and isinstance(total["Tiếp nhận"], int)
    assert total["Số ngày làm việc TB để thông báo tiếp nhận"] == 1.5
    assert total["Mức độ hài lòng TB (1-5)"] == 3.67 and total["Tồn cuối tháng"] == 4
    assert data[1]["Tiếp nhận"] == 5 and data[2]["Tiếp nhận"] == 3
    assert book["Biểu đồ"]._charts  # noqa: SLF001 - the workbook carries its charts
    assert any("ngày làm việc" in (r[0] or "") for r in book["Ghi chú"].iter_rows(values_only=True))

    content, media_type, filename = reports.monthly_file(people["thanhtra"], "MX", "2026-11", "csv")
    assert content.startswith(b"\xef\xbb\xbf") and media_type.startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert [r["Mã đơn vị"] for r in table] == ["MX", "MX", "MX1"]  # total, own, child
    assert table[0]["Giải trình đúng hạn"] == "2" and table[0]["Số ngày TB để giải trình"] == "13.33"
    assert table[2]["Tiếp nhận"] == "3" and table[0]["Đơn vị"].startswith("Tổng cộng")
    with pytest.raises(ValidationFailed):
        reports.monthly_file(people["thanhtra"], "MX", "2026-11", "pdf")


def test_yearly_evaluation_per_unit_and_official(month):
    people, _ = month
    evaluation = reports.yearly(people["lanhdao"], "MX", "2026")
    total = evaluation["total"]
    # A, G on time; B late; F suspended (not late); J and K never acknowledged, their deadlines
    # (30/11 and 8/12) passed: late too.
    assert (total["cases"], total["explained_on_time"], total["explained_late"]) == (9, 2, 1)
    assert total["open_overdue"] == 2 and total["late_cases"] == 3 and total["on_time_rate"] == 40.0
    assert total["satisfaction_avg"] == 3.67
    by_unit = {r["unit"]: r for r in evaluation["units"]}
    assert by_unit["MX1"]["explained_on_time"] == 1 and by_unit["MX1"]["satisfaction_avg"] == 4.0
    (official,) = evaluation["officials"]
    assert official["official"] == "chuyenvien" and official["full_name"].startswith("Nguyễn Văn Chuyên")
    assert (official["cases"], official["explained_on_time"], official["explained_late"]) == (3, 2, 1)
    assert official["on_time_rate"] == 66.7 and official["satisfaction_avg"] == 3.67


def test_unhappy_ratings_are_listed_for_the_supervisor(month):
    people, cases = month
    listed = reports.unhappy_ratings(people["thanhtra"], "MX")
    assert [(i["code"], i["score"], i["comment"]) for i in listed["items"]] == [
        (cases["B"]["code"], 2, "Trả lời chậm, chưa rõ căn cứ")]
    assert listed["items"][0]["officials"] == ["chuyenvien"]
    assert reports.unhappy_ratings(people["thanhtra"], "MX", max_score=4)["total"] == 2
    assert reports.unhappy_ratings(people["thanhtra"], "MX", month="2026-11")["total"] == 0  # rated in December
    assert reports.unhappy_ratings(people["thanhtra"], "MX1")["total"] == 0


def test_an_empty_month_has_zeros_and_no_averages(world, people):
    report = reports.monthly(people["admin"], "MX", "2026-01")
    assert report["received"] == 0 and report["open_at_end"] == 0
    assert report["avg_working_days_to_acknowledge"] is None and report["satisfaction_avg"] is None
    assert report["on_time_rate"] is None
    assert CITIZEN["unit"] == "MX"


def test_the_migration_fills_the_report_columns_of_older_rows(empty_url, fixed_clock):
    """Cases written at head lose the columns (downgrade to 0003) and get them back, the same, on upgrade."""
    from alembic import command

    from giaitrinh import migrate
    from giaitrinh.engine import calendar as cal

    migrate.upgrade(empty_url)
    engine = db.init_db(empty_url)
    cal.invalidate_cache()
    demo._setup_accounts()
    demo._deploy()
    build_month(fixed_clock)
    columns = ("code", "decision", "refusal_ground", "ack_working_days", "explain_due_at", "explain_days")

    def facts():
        with db.read_only() as session:
            return sorted(tuple(getattr(r, c) for c in columns) for r in session.execute(select(Request)).scalars())

    before = facts()
    assert sum(1 for row in before if row[4] is not None) == 3
    engine.dispose()
    config = migrate.alembic_config(empty_url)
    command.downgrade(config, "0003")
    command.upgrade(config, "head")
    engine = db.init_db(empty_url)
    try:
        assert facts() == before
    finally:
        engine.dispose()


def test_the_page_offers_the_month_just_ended_in_the_first_days(fixed_clock):
    fixed_clock.set(clock.parse_instant("2026-12-01T09:00:00+07:00"))
    assert reports.reporting_month() == "2026-11"
    fixed_clock.set(clock.parse_instant("2027-01-10T23:00:00+07:00"))
    assert reports.reporting_month() == "2026-12"
    fixed_clock.set(clock.parse_instant("2026-12-11T00:30:00+07:00"))
    assert reports.reporting_month() == "2026-12"
