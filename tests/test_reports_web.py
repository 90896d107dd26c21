"""Reports and open data over HTTP, on the pages, and from the command line."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from giaitrinh.cli import main
from giaitrinh.config import load_settings
from giaitrinh.web import create_app

from .test_opendata import PERSONAL, publish
from .test_pages import login, page
from .test_reports import build_month
from .helpers import submit


@pytest.fixture
def app(world):
    return create_app(load_settings(database_url=world, secret_key="t", dev_clock=False), boot_engine=False)


@pytest.fixture
def month(world, fixed_clock):
    return build_month(fixed_clock)


def bearer(client, username):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo"})
    assert response.status_code == 201, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


def test_monthly_report_over_the_api(app, month):
    client = app.test_client()
    head = bearer(client, "thanhtra")
    report = client.get("/api/v1/reports/monthly?unit=MX&month=2026-11", headers=head)
    assert report.status_code == 200
    body = report.json
    assert (body["unit"], body["month"], body["received"], body["explained_on_time"], body["explained_late"],
            body["open_at_end"], body["avg_working_days_to_acknowledge"], body["satisfaction_avg"]) == (
        "MX", "2026-11", 8, 2, 1, 4, 1.5, 3.67)
    xlsx = client.get("/api/v1/reports/monthly?unit=MX&month=2026-11&format=xlsx", headers=head)
    assert xlsx.status_code == 200 and xlsx.mimetype.endswith("spreadsheetml.sheet")
    assert 'filename="bao-cao-giai-trinh-MX-2026-11.xlsx"' in xlsx.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(xlsx.data))["Báo cáo tháng"]
    values = [c.value for c in next(r for r in sheet.iter_rows() if r[0].value == "MX")]
    assert values[:4] == ["MX", "Tổng cộng: UBND phường Mỹ Xuyên", 8, 4]
    table = client.get("/api/v1/reports/monthly?unit=MX&month=2026-11&format=csv", headers=head)
    assert table.status_code == 200 and table.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(table.data.decode("utf-8-sig"))))
    assert rows[0]["Giải trình quá hạn"] == "1"
    # Another unit's official, a wrong month, a missing unit, a wrong format.
    other = bearer(client, "chuyenvien2")
    assert client.get("/api/v1/reports/monthly?unit=MX&month=2026-11", headers=other).status_code == 403
    assert client.get("/api/v1/reports/monthly?unit=MX&month=2026-11&format=csv", headers=other).status_code == 403
    assert client.get("/api/v1/reports/monthly?unit=MX&month=2026-11").status_code == 401
    error = client.get("/api/v1/reports/monthly?unit=MX&month=11-2026", headers=head)
    assert error.status_code == 422 and "month" in error.json["error"]["fields"]
    assert "unit" in client.get("/api/v1/reports/monthly", headers=head).json["error"]["fields"]
    assert "format" in client.get("/api/v1/reports/monthly?unit=MX&format=pdf", headers=head).json["error"]["fields"]
    yearly = client.get("/api/v1/reports/yearly?unit=MX&year=2026", headers=bearer(client, "lanhdao"))
    assert yearly.status_code == 200 and yearly.json["officials"][0]["official"] == "chuyenvien"
    unhappy = client.get("/api/v1/reports/unhappy-ratings?unit=MX", headers=head)
    assert unhappy.status_code == 200 and [i["score"] for i in unhappy.json["items"]] == [2]


def test_report_pages_with_charts_and_downloads(app, month):
    client = login(app, "thanhtra")
    html = page(client, "/giam-sat/bao-cao/?unit=MX&month=2026-11")
    assert "<svg" in html and "Báo cáo tháng 11/2026" in html and "Tổ dân phố 3" in html
    assert "/giam-sat/bao-cao/thang.xlsx?unit=MX&amp;month=2026-11" in html
    assert " style=" not in html and "<script>" not in html  # the strict CSP holds
    download = client.get("/giam-sat/bao-cao/thang.csv?unit=MX&month=2026-11")
    assert download.status_code == 200 and download.data.startswith(b"\xef\xbb\xbf")
    assert client.get("/giam-sat/bao-cao/thang.xlsx?unit=MX&month=2026-11").data[:2] == b"PK"
    yearly = page(client, "/giam-sat/bao-cao/nam?unit=MX&year=2026")
    assert "Nguyễn Văn Chuyên" in yearly and "<svg" in yearly
    unhappy = page(client, "/giam-sat/bao-cao/danh-gia?unit=MX")
    assert "Trả lời chậm, chưa rõ căn cứ" in unhappy and "/giam-sat/ho-so/" in unhappy
    english = page(client, "/giam-sat/bao-cao/?unit=MX&month=2026-11&lang=en")
    assert "Monthly report" in english
    # Another unit's official gets a 403 page, whatever the page.
    other = login(app, "chuyenvien2")
    for path in ("/giam-sat/bao-cao/", "/giam-sat/bao-cao/?unit=MX", "/giam-sat/bao-cao/thang.xlsx?unit=MX",
                 "/giam-sat/bao-cao/nam?unit=MX", "/giam-sat/bao-cao/danh-gia?unit=MX"):
        assert other.get(path).status_code == 403, path
    assert client.get("/giam-sat/bao-cao/?unit=GM").status_code == 403
    assert client.get("/giam-sat/bao-cao/?unit=MX&month=2026-99").status_code == 422


def test_export_feed_over_the_api(app, people):
    client = app.test_client()
    code = submit(subject="Nguyễn Văn An hỏi về thu hồi đất")["code"]
    publish(code, people)
    exporter = bearer(client, "ketnoi")
    first = client.get("/api/v1/export/cases?limit=2", headers=exporter)
    assert first.status_code == 200 and len(first.json["items"]) == 2 and first.json["has_more"]
    rest = client.get(f"/api/v1/export/cases?since={first.json['next']}&limit=1000", headers=exporter).json
    events = [i["event"] for i in first.json["items"] + rest["items"]]
    assert events == ["submitted", "accepted", "assigned", "approved", "explained", "published"]
    text = json.dumps(first.json, ensure_ascii=False) + json.dumps(rest, ensure_ascii=False)
    for secret in PERSONAL:
        assert secret not in text
    assert client.get("/api/v1/export/cases", headers=bearer(client, "thanhtra")).status_code == 403
    assert client.get("/api/v1/export/cases").status_code == 401
    bad = client.get("/api/v1/export/cases?since=x", headers=exporter)
    assert bad.status_code == 422 and "since" in bad.json["error"]["fields"]


def test_open311_over_http(app, people):
    client = app.test_client()
    code = submit()["code"]
    publish(code, people)
    hidden = submit()["code"]
    services = client.get("/open311/v2/services.json")
    assert services.status_code == 200 and services.json[0]["service_code"] == "giai_trinh"
    listed = client.get("/open311/v2/requests.json?status=closed&service_code=giai_trinh")
    assert listed.status_code == 200 and [r["service_request_id"] for r in listed.json] == [code]
    one = client.get(f"/open311/v2/requests/{code}.json")
    assert one.status_code == 200 and one.json[0]["status"] == "closed"
    missing = client.get(f"/open311/v2/requests/{hidden}.json")
    assert missing.status_code == 404 and missing.json[0]["code"] == 404
    bad = client.get("/open311/v2/requests.json?status=pending")
    assert bad.status_code == 400 and bad.json[0]["code"] == 400 and "status" in bad.json[0]["description"]
    assert client.get("/open311/v2/requests.xml").json[0]["code"] == 404
    assert client.post("/open311/v2/requests.json", json={}).status_code in (400, 405)  # read-only
    document = client.get("/api/v1/openapi.json").json["paths"]
    for path in ("/api/v1/reports/monthly", "/api/v1/export/cases", "/open311/v2/services.json",
                 "/open311/v2/requests.json", "/open311/v2/requests/{code}.json"):
        assert path in document


@pytest.mark.parametrize("suffix", ["xlsx", "csv"])
def test_the_command_line_writes_the_same_file(month, world, tmp_path, suffix):
    people, _ = month
    out = tmp_path / f"bao-cao.{suffix}"
    result = CliRunner().invoke(main, ["report", "monthly", "--unit", "MX", "--month", "2026-11", "--out", str(out)],
                                env={"DATABASE_URL": world, "GIAITRINH_DEV_CLOCK": "0"})
    assert result.exit_code == 0, result.output
    assert "8 received, 2 explained on time, 1 late, 4 open at month end" in result.output
    if suffix == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
        assert [r["Tiếp nhận"] for r in rows] == ["8", "5", "3"]
    else:
        sheet = load_workbook(out)["Báo cáo tháng"]
        assert [r[2] for r in sheet.iter_rows(values_only=True) if r[0] in ("MX", "MX1")] == [8, 5, 3]
    wrong = CliRunner().invoke(main, ["report", "monthly", "--unit", "MX", "--month", "2026-11",
                                      "--out", str(tmp_path / "x.pdf")], env={"DATABASE_URL": world})
    assert wrong.exit_code != 0 and ".xlsx or .csv" in wrong.output
    unknown = CliRunner().invoke(main, ["report", "monthly", "--unit", "ZZ", "--month", "2026-11",
                                        "--out", str(tmp_path / "z.csv")], env={"DATABASE_URL": world})
    assert unknown.exit_code != 0 and "ZZ" in unknown.output
