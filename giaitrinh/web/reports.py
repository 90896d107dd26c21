"""Reports pages for supervisors and heads: the monthly report, the yearly evaluation, unhappy ratings.

The figures come from ``engine.services.reports``; charts are inline SVG drawn from
``charts.bars`` geometry; the XLSX and CSV are the same files the API and the CLI give.
"""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _

from ..engine.errors import Forbidden
from ..engine.services import reports
from ..engine.services.tasks import REFUSAL_GROUNDS
from . import charts
from .auth import login_required, require_actor
from .policy import policy
from .reports_api import file_response

bp = Blueprint("reports", __name__, url_prefix="/giam-sat/bao-cao")


def labels() -> dict[str, str]:
    """The report's figures as the page names them (the files keep their Vietnamese headers)."""
    return {
        "received": _("Tiếp nhận"), "accepted": _("Thụ lý"), "refused": _("Từ chối"),
        "redirected": _("Hướng dẫn đến cơ quan khác"), "explained": _("Đã giải trình"),
        "explained_on_time": _("Giải trình đúng hạn"), "explained_late": _("Giải trình quá hạn"),
        "on_time_rate": _("Tỷ lệ đúng hạn"),
        "avg_working_days_to_acknowledge": _("Số ngày làm việc TB để thông báo tiếp nhận"),
        "avg_days_to_explain": _("Số ngày TB để giải trình"), "extensions": _("Gia hạn"),
        "suspensions": _("Tạm đình chỉ"), "withdrawals": _("Rút yêu cầu"),
        "satisfaction_count": _("Số lượt đánh giá"), "satisfaction_avg": _("Mức độ hài lòng TB (1-5)"),
        "open_at_end": _("Tồn cuối tháng"),
    }


TABLE = ("received", "accepted", "refused", "redirected", "explained_on_time", "explained_late", "on_time_rate",
         "avg_working_days_to_acknowledge", "avg_days_to_explain", "extensions", "suspensions", "withdrawals",
         "satisfaction_avg", "open_at_end")


def _units_or_403(actor):
    units = reports.report_units(actor)
    if not units:
        raise Forbidden("chỉ lãnh đạo, thanh tra mới xem được báo cáo (supervisors and heads only)")
    return units


def _arg(name: str, max_len: int) -> str | None:
    value = (request.args.get(name) or "").strip()
    return value[:max_len] or None


def _monthly_charts(report: dict, names: dict[str, str]) -> dict:
    outcome = charts.bars([
        (names["received"], [(report["received"], "c-total")]),
        (names["accepted"], [(report["accepted"], "c-accepted")]),
        (names["refused"], [(report["refused"], "c-refused")]),
        (names["redirected"], [(report["redirected"], "c-muted")]),
        (names["explained_on_time"], [(report["explained_on_time"], "c-ok")]),
        (names["explained_late"], [(report["explained_late"], "c-late")]),
        (names["open_at_end"], [(report["open_at_end"], "c-open")]),
    ], width=500, label_width=200)
    timeliness = charts.bars(
        [(row["unit_name"], [(row["explained_on_time"], "c-ok", _("Đúng hạn")),
                              (row["explained_late"], "c-late", _("Quá hạn"))])
         for row in report["breakdown"]],
        legend=[(_("Đúng hạn"), "c-ok"), (_("Quá hạn"), "c-late")])
    satisfaction = charts.bars(
        [(_("%(n)s sao", n=k), [(report["satisfaction_distribution"][str(k)], f"c-star{k}")]) for k in range(5, 0, -1)],
        label_width=80, width=460)
    grounds = [(REFUSAL_GROUNDS[g], n) for g, n in report["refused_by_ground"].items() if n]
    return {"outcome": outcome, "timeliness": timeliness, "satisfaction": satisfaction, "grounds": grounds}


@bp.get("/")
@policy("official")
@login_required
def monthly():
    actor = require_actor()
    units = _units_or_403(actor)
    unit = _arg("unit", 32) or units[0][0]
    month = _arg("month", 7) or reports.reporting_month()
    report = reports.monthly(actor, unit, month)
    names = labels()
    return render_template("reports/monthly.html", report=report, units=units, names=names, table=TABLE,
                           charts=_monthly_charts(report, names))


@bp.get("/thang.<fmt>")
@policy("official")
@login_required
def monthly_file(fmt: str):
    if fmt not in ("xlsx", "csv"):
        abort(404)
    actor = require_actor()
    units = _units_or_403(actor)
    unit = _arg("unit", 32) or units[0][0]
    return file_response(*reports.monthly_file(actor, unit, _arg("month", 7) or reports.reporting_month(), fmt))


@bp.get("/nam")
@policy("official")
@login_required
def yearly():
    actor = require_actor()
    units = _units_or_403(actor)
    unit = _arg("unit", 32) or units[0][0]
    year = _arg("year", 4) or reports.current_month()[:4]
    evaluation = reports.yearly(actor, unit, year)
    rows = evaluation["officials"]
    chart = charts.bars([(r["full_name"], [(r["on_time_rate"] or 0, "c-ok")]) for r in rows], unit="%")
    unit_chart = charts.bars([(r["unit_name"], [(r["explained_on_time"], "c-ok", _("Đúng hạn")),
                                                (r["late_cases"], "c-late", _("Chậm, quá hạn"))])
                              for r in evaluation["units"]],
                             legend=[(_("Đúng hạn"), "c-ok"), (_("Chậm, quá hạn"), "c-late")])
    return render_template("reports/yearly.html", evaluation=evaluation, units=units, chart=chart,
                           unit_chart=unit_chart)


@bp.get("/danh-gia")
@policy("official")
@login_required
def unhappy():
    actor = require_actor()
    units = _units_or_403(actor)
    unit = _arg("unit", 32) or units[0][0]
    month = _arg("month", 7)
    try:
        page = max(1, min(10_000, int(request.args.get("page") or 1)))
    except ValueError:
        page = 1
    ratings = reports.unhappy_ratings(actor, unit, month=month, page=page)
    return render_template("reports/unhappy.html", ratings=ratings, units=units, unit=unit, month=month or "")
