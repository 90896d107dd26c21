"""Supervisors' reports: the monthly report upward, the yearly evaluation, unhappy ratings.

Every figure is an SQL aggregate over typed columns of ``requests`` (and ``tasks`` for the
official, ``audit_events`` for suspensions and withdrawals); no workflow is deserialized.
The facts that need the working calendar (working days to acknowledge, days to explain, the
deadline in force) are written on the request when they happen (``_common.record_*``).

Definitions (also printed in the report's footnotes, ``DEFINITIONS``):
- a case counts in month M when it was received in M, Asia/Ho_Chi_Minh local time; its
  figures are what is known of it when the report is made;
- explained on time: the explanation was issued at or before the explanation deadline in
  force then (with the extension and the time suspended); late otherwise;
- working days to acknowledge: from the day of receipt (not counted, art. 147) to the day of
  the acceptance, refusal or redirection notice, in working days;
- days to explain: calendar days from the acceptance notice to the explanation, without the
  days the case stood suspended (the period of art. 13 is in days);
- open at month end: received by the end of M and neither explained nor closed (refused,
  redirected, withdrawn) by then, whenever it was received;
- a unit's report is its own cases plus those of every unit below it, with one row for its
  own cases and one per child unit (that child and everything below it).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, distinct, func, or_, select

from .. import calendar as cal, clock, db
from ..accounts import ALL_UNITS, Actor
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import AuditEvent, Request, Task, Unit, User
from ._common import iso
from .tasks import REFUSAL_GROUNDS

REPORT_ROLES = ("supervisor", "head", "admin")
FORMATS = ("json", "xlsx", "csv")
UNHAPPY_MAX_SCORE = 2

DEFINITIONS = [
    ("cohort", "Hồ sơ được tính vào tháng nhận (theo giờ Việt Nam, UTC+07:00); số liệu là tình trạng tại thời điểm lập "
               "báo cáo."),
    ("on_time", "Giải trình đúng hạn: văn bản giải trình ban hành không muộn hơn thời hạn giải trình đang áp dụng "
                "(đã tính gia hạn và thời gian tạm đình chỉ); quá hạn trong trường hợp ngược lại."),
    ("acknowledge", "Số ngày làm việc để thông báo tiếp nhận: tính từ ngày nhận yêu cầu (không tính ngày nhận, "
                    "Điều 147 BLDS) đến ngày thông báo thụ lý, từ chối hoặc hướng dẫn; không tính thứ Bảy, Chủ nhật, "
                    "ngày lễ, ngày nghỉ."),
    ("explain", "Số ngày giải trình: số ngày (theo lịch) từ ngày thông báo thụ lý đến ngày ban hành văn bản giải trình, "
                "không tính thời gian tạm đình chỉ."),
    ("open", "Tồn cuối tháng: hồ sơ nhận đến hết tháng, chưa giải trình và chưa kết thúc (từ chối, hướng dẫn, rút) "
             "tại thời điểm cuối tháng."),
    ("rollup", "Báo cáo của một đơn vị gồm hồ sơ của đơn vị và mọi đơn vị trực thuộc; mỗi đơn vị trực thuộc một dòng."),
    ("satisfaction", "Mức độ hài lòng: điểm người yêu cầu đánh giá (1 đến 5) cho các hồ sơ nhận trong tháng đã được "
                     "đánh giá."),
]

# The report's figures in order: (key, Vietnamese column header, number kind). Shared by the
# JSON, the spreadsheet, the CSV and the page, so they cannot disagree.
COLUMNS: list[tuple[str, str, str]] = [
    ("received", "Tiếp nhận", "int"),
    ("accepted", "Thụ lý", "int"),
    ("refused", "Từ chối", "int"),
    ("redirected", "Hướng dẫn đến cơ quan khác", "int"),
    ("explained", "Đã giải trình", "int"),
    ("explained_on_time", "Giải trình đúng hạn", "int"),
    ("explained_late", "Giải trình quá hạn", "int"),
    ("on_time_rate", "Tỷ lệ đúng hạn (%)", "float"),
    ("avg_working_days_to_acknowledge", "Số ngày làm việc TB để thông báo tiếp nhận", "float"),
    ("avg_days_to_explain", "Số ngày TB để giải trình", "float"),
    ("extensions", "Gia hạn", "int"),
    ("suspensions", "Tạm đình chỉ", "int"),
    ("withdrawals", "Rút yêu cầu", "int"),
    ("satisfaction_count", "Số lượt đánh giá", "int"),
    ("satisfaction_avg", "Mức độ hài lòng TB (1-5)", "float"),
    *[(f"satisfaction_{k}", f"Đánh giá {k} sao", "int") for k in range(1, 6)],
    *[(f"refused_{g}", f"Từ chối: {g}", "int") for g in REFUSAL_GROUNDS],
    ("open_at_end", "Tồn cuối tháng", "int"),
]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# -- who may see which unit ----------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    code: str
    name: str
    parent_code: str | None


def _tree(session) -> tuple[dict[str, _Unit], dict[str, list[str]]]:
    """Every unit (plain values, usable after the session) and each one's children."""
    units = {code: _Unit(code, name, parent) for code, name, parent in
             session.execute(select(Unit.code, Unit.name, Unit.parent_code).order_by(Unit.code))}
    children: dict[str, list[str]] = {code: [] for code in units}
    for u in units.values():
        if u.parent_code in children and u.parent_code != u.code:
            children[u.parent_code].append(u.code)
    return units, children


def _subtree(children: dict[str, list[str]], code: str) -> list[str]:
    out, todo = [], [code]
    while todo:
        current = todo.pop()
        if current in out:
            continue
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def _require_unit(session, actor: Actor, unit: Any) -> tuple[dict[str, _Unit], dict[str, list[str]]]:
    if not isinstance(unit, str) or not unit.strip():
        raise ValidationFailed("cần chọn đơn vị (unit required)", {"unit": "Mã đơn vị, ví dụ MX (unit code)."})
    allowed = actor.units(*REPORT_ROLES)
    if not allowed:
        raise Forbidden("chỉ lãnh đạo, thanh tra mới xem được báo cáo (supervisors and heads only)")
    units, children = _tree(session)
    if unit not in units:
        raise NotFound(f"không có đơn vị {unit[:32]} (unknown unit)")
    # A role held in a unit covers the units below it (accounts.actor_for), never the ones above.
    if ALL_UNITS not in allowed and unit not in allowed:
        raise Forbidden(f"không có quyền xem báo cáo của đơn vị {unit} (not your unit)")
    return units, children


def report_units(actor: Actor) -> list[tuple[str, str]]:
    """(code, name) of the units the actor may see reports of, parents before children."""
    allowed = actor.units(*REPORT_ROLES)
    if not allowed:
        return []
    with db.read_only() as session:
        units, children = _tree(session)
    roots = [c for c, u in units.items() if u.parent_code not in units]
    ordered: list[str] = []
    for root in roots:
        stack = [root]
        while stack:
            code = stack.pop(0)
            if code not in ordered:
                ordered.append(code)
                stack[:0] = children.get(code, [])
    return [(c, units[c].name) for c in ordered if ALL_UNITS in allowed or c in allowed]


def parse_month(month: Any) -> tuple[int, int]:
    match = _MONTH.match(month) if isinstance(month, str) else None
    if not match or not (2000 <= int(match.group(1)) <= 2100 and 1 <= int(match.group(2)) <= 12):
        raise ValidationFailed("tháng không hợp lệ (invalid month)", {"month": "YYYY-MM, ví dụ 2026-11"})
    return int(match.group(1)), int(match.group(2))


def parse_year(year: Any) -> int:
    try:
        number = int(year)
    except (TypeError, ValueError):
        number = 0
    if not 2000 <= number <= 2100 or isinstance(year, bool):
        raise ValidationFailed("năm không hợp lệ (invalid year)", {"year": "YYYY, 2000..2100"})
    return number


def current_month() -> str:
    return cal.local_date(clock.now()).strftime("%Y-%m")


def reporting_month() -> str:
    """The month a report is usually wanted for: in the first ten days of a month, the one that
    just ended (the monthly report goes upward then); later, the month under way."""
    today = cal.local_date(clock.now())
    if today.day <= 10:
        return (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    return today.strftime("%Y-%m")


def _local_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=cal.LOCAL_TZ)


def _month_range(year: int, month: int) -> tuple[datetime, datetime]:
    first = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return _local_start(first), _local_start(following)


# -- the figures -----------------------------------------------------------------------------


def _count_if(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


_SUMS = ("received", "accepted", "refused", "redirected", "explained", "explained_on_time", "explained_late",
         "extensions", "suspensions", "withdrawals", "ack_sum", "ack_n", "explain_sum", "explain_n",
         "satisfaction_sum", "satisfaction_count", "open_at_end",
         *[f"satisfaction_{k}" for k in range(1, 6)], *[f"refused_{g}" for g in REFUSAL_GROUNDS])


def _raw_figures(session, codes: list[str], start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Per unit code, the sums and counts the report is made of (averages need both to roll up)."""
    out: dict[str, dict[str, int]] = {code: dict.fromkeys(_SUMS, 0) for code in codes}
    cohort = and_(Request.unit_code.in_(codes), Request.received_at >= start, Request.received_at < end)
    explained = Request.explained_at.is_not(None)
    rows = session.execute(
        select(Request.unit_code,
               func.count().label("received"),
               _count_if(Request.decision == "accept").label("accepted"),
               _count_if(Request.decision == "refuse").label("refused"),
               _count_if(Request.decision == "redirect").label("redirected"),
               _count_if(explained).label("explained"),
               _count_if(and_(explained, Request.explain_due_at.is_not(None),
                              Request.explained_at <= Request.explain_due_at)).label("explained_on_time"),
               _count_if(and_(explained, Request.explained_at > Request.explain_due_at)).label("explained_late"),
               _count_if(Request.extended.is_(True)).label("extensions"),
               func.coalesce(func.sum(Request.ack_working_days), 0).label("ack_sum"),
               func.count(Request.ack_working_days).label("ack_n"),
               func.coalesce(func.sum(case((explained, Request.explain_days))), 0).label("explain_sum"),
               func.count(case((explained, Request.explain_days))).label("explain_n"),
               func.coalesce(func.sum(Request.rating_score), 0).label("satisfaction_sum"),
               func.count(Request.rating_score).label("satisfaction_count"),
               *[_count_if(Request.rating_score == k).label(f"satisfaction_{k}") for k in range(1, 6)])
        .where(cohort).group_by(Request.unit_code)
    ).mappings()
    for row in rows:
        out[row["unit_code"]].update({k: int(v or 0) for k, v in row.items() if k != "unit_code"})
    for code, ground, n in session.execute(
            select(Request.unit_code, Request.refusal_ground, func.count())
            .where(cohort, Request.decision == "refuse").group_by(Request.unit_code, Request.refusal_ground)):
        key = f"refused_{ground}"
        if key in out[code]:
            out[code][key] += int(n)
    for code, action, n in session.execute(
            select(Request.unit_code, AuditEvent.action, func.count(distinct(AuditEvent.request_id)))
            .join(AuditEvent, AuditEvent.request_id == Request.id)
            .where(cohort, AuditEvent.action.in_(("suspended", "withdrawn")))
            .group_by(Request.unit_code, AuditEvent.action)):
        out[code]["suspensions" if action == "suspended" else "withdrawals"] += int(n)
    open_rows = session.execute(
        select(Request.unit_code, func.count())
        .where(Request.unit_code.in_(codes), Request.received_at < end,
               or_(Request.closed_at.is_(None), Request.closed_at >= end),
               or_(Request.explained_at.is_(None), Request.explained_at >= end))
        .group_by(Request.unit_code))
    for code, n in open_rows:
        out[code]["open_at_end"] = int(n)
    return out


def _add(rows: list[dict[str, int]]) -> dict[str, int]:
    total = dict.fromkeys(_SUMS, 0)
    for row in rows:
        for key in _SUMS:
            total[key] += row[key]
    return total


def _ratio(numerator: int, denominator: int, digits: int = 2) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def _finish(raw: dict[str, int]) -> dict[str, Any]:
    """Sums and counts -> the published figures (averages, rate, distributions)."""
    out: dict[str, Any] = {k: raw[k] for k in ("received", "accepted", "refused", "redirected", "explained",
                                                "explained_on_time", "explained_late", "extensions", "suspensions",
                                                "withdrawals", "satisfaction_count", "open_at_end")}
    out["on_time_rate"] = _ratio(100 * raw["explained_on_time"], raw["explained_on_time"] + raw["explained_late"], 1)
    out["avg_working_days_to_acknowledge"] = _ratio(raw["ack_sum"], raw["ack_n"])
    out["avg_days_to_explain"] = _ratio(raw["explain_sum"], raw["explain_n"])
    out["satisfaction_avg"] = _ratio(raw["satisfaction_sum"], raw["satisfaction_count"])
    out["satisfaction_distribution"] = {str(k): raw[f"satisfaction_{k}"] for k in range(1, 6)}
    out["refused_by_ground"] = {g: raw[f"refused_{g}"] for g in REFUSAL_GROUNDS}
    return out


def flat(figures: dict[str, Any]) -> dict[str, Any]:
    """One row of COLUMNS from a unit's figures (distributions spread over their columns)."""
    row = dict(figures)
    for k, n in figures.get("satisfaction_distribution", {}).items():
        row[f"satisfaction_{k}"] = n
    for g, n in figures.get("refused_by_ground", {}).items():
        row[f"refused_{g}"] = n
    return {key: row.get(key) for key, _, _ in COLUMNS}


def monthly(actor: Actor, unit: Any, month: Any) -> dict:
    """The monthly report of a unit (its own cases and every unit below it), with one row per child."""
    year, number = parse_month(month)
    start, end = _month_range(year, number)
    with db.read_only() as session:
        units, children = _require_unit(session, actor, unit)
        codes = _subtree(children, unit)
        raw = _raw_figures(session, codes, start, end)
        breakdown = [{"unit": unit, "unit_name": units[unit].name, "scope": "own", **_finish(raw[unit])}]
        for child in children.get(unit, []):
            sub = _subtree(children, child)
            breakdown.append({"unit": child, "unit_name": units[child].name, "scope": "subtree",
                              "units": sub, **_finish(_add([raw[c] for c in sub]))})
        totals = _finish(_add(list(raw.values())))
    return {
        "unit": unit, "unit_name": units[unit].name, "month": f"{year:04d}-{number:02d}",
        "period": {"from": start.date().isoformat(), "to": (end - timedelta(days=1)).date().isoformat()},
        "units": codes, **totals, "breakdown": breakdown,
        "refusal_grounds": dict(REFUSAL_GROUNDS),
        "definitions": dict(DEFINITIONS), "generated_at": iso(clock.now()),
    }


# -- the yearly evaluation ---------------------------------------------------------------------


def yearly(actor: Actor, unit: Any, year: Any) -> dict:
    """On-time rate, late cases and satisfaction per unit and per official, for the yearly rating.

    A case counts in the year it was received. The official of a case is whoever completed its
    explanation step (``tasks.completed_by``); a case open and past its deadline counts as late
    for the unit, and for the official holding its open task.
    """
    number = parse_year(year)
    start, end = _local_start(date(number, 1, 1)), _local_start(date(number + 1, 1, 1))
    now = clock.now()
    with db.read_only() as session:
        units, children = _require_unit(session, actor, unit)
        codes = _subtree(children, unit)
        cohort = and_(Request.unit_code.in_(codes), Request.received_at >= start, Request.received_at < end)
        explained = Request.explained_at.is_not(None)
        on_time = and_(explained, Request.explain_due_at.is_not(None), Request.explained_at <= Request.explain_due_at)
        late = and_(explained, Request.explained_at > Request.explain_due_at)
        open_late = and_(Request.closed.is_(False), Request.explained_at.is_(None), Request.deadline_at.is_not(None),
                         Request.deadline_at < now, Request.suspended_at.is_(None))
        measures = (func.count(distinct(Request.id)).label("cases"),
                    func.count(distinct(case((on_time, Request.id)))).label("on_time"),
                    func.count(distinct(case((late, Request.id)))).label("late"),
                    func.count(distinct(case((open_late, Request.id)))).label("open_late"),
                    func.coalesce(func.sum(Request.rating_score), 0).label("rating_sum"),
                    func.count(Request.rating_score).label("rating_n"))
        per_unit = {code: None for code in codes}
        for row in session.execute(select(Request.unit_code, *measures).where(cohort)
                                   .group_by(Request.unit_code)).mappings():
            row = dict(row)
            per_unit[row.pop("unit_code")] = row
        unit_rows = [_evaluation(code, units[code].name, per_unit[code]) for code in codes]
        # One row per (case, official who completed its explanation), or who holds its open task.
        handled = (select(Task.request_id.label("request_id"), Task.completed_by.label("official"))
                   .where(Task.step == "explain", Task.status == "completed", Task.completed_by.is_not(None))
                   .union(select(Task.request_id, Task.assignee)
                          .where(Task.step == "explain", Task.status == "open", Task.assignee.is_not(None)))
                   .subquery())
        rows = [dict(row) for row in session.execute(
            select(handled.c.official, *measures).join(Request, Request.id == handled.c.request_id)
            .where(cohort).group_by(handled.c.official).order_by(handled.c.official)).mappings()]
        names = dict(session.execute(select(User.username, User.full_name)
                                     .where(User.username.in_([r["official"] for r in rows]))).all()) if rows else {}
        official_rows = [_evaluation(row.pop("official"), None, row, names) for row in rows]
    total = _evaluation(unit, units[unit].name, {
        key: sum((r["raw"][key] for r in unit_rows), 0) for key in ("cases", "on_time", "late", "open_late",
                                                                   "rating_sum", "rating_n")})
    for row in (*unit_rows, *official_rows, total):
        row.pop("raw")
    return {"unit": unit, "unit_name": units[unit].name, "year": number, "total": total, "units": unit_rows,
            "officials": official_rows, "definitions": dict(DEFINITIONS), "generated_at": iso(now)}


def _evaluation(key: str, name: str | None, raw: dict | None, names: dict | None = None) -> dict:
    raw = {k: int(v or 0) for k, v in (raw or {}).items()} or dict.fromkeys(
        ("cases", "on_time", "late", "open_late", "rating_sum", "rating_n"), 0)
    decided = raw["on_time"] + raw["late"] + raw["open_late"]
    row = {"cases": raw["cases"], "explained_on_time": raw["on_time"], "explained_late": raw["late"],
           "open_overdue": raw["open_late"], "late_cases": raw["late"] + raw["open_late"],
           "on_time_rate": _ratio(100 * raw["on_time"], decided, 1),
           "satisfaction_count": raw["rating_n"], "satisfaction_avg": _ratio(raw["rating_sum"], raw["rating_n"]),
           "raw": raw}
    if names is None:
        return {"unit": key, "unit_name": name, **row}
    return {"official": key, "full_name": names.get(key, key), **row}


# -- ratings the supervisor must read ----------------------------------------------------------


def unhappy_ratings(actor: Actor, unit: Any, month: Any = None, max_score: int = UNHAPPY_MAX_SCORE,
                    page: int = 1, per_page: int = 50) -> dict:
    """Ratings of ``max_score`` or less (default 2 of 5), newest first, with the citizen's comment."""
    with db.read_only() as session:
        units, children = _require_unit(session, actor, unit)
        codes = _subtree(children, unit)
        query = select(Request).where(Request.unit_code.in_(codes), Request.rating_score.is_not(None),
                                      Request.rating_score <= max_score)
        if month:
            start, end = _month_range(*parse_month(month))
            query = query.where(Request.rated_at >= start, Request.rated_at < end)
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = session.execute(query.order_by(Request.rated_at.desc(), Request.id.desc())
                               .offset((page - 1) * per_page).limit(per_page)).scalars().all()
        officials: dict[int, list[str]] = {}
        if rows:
            for request_id, official in session.execute(
                    select(Task.request_id, Task.completed_by).where(
                        Task.request_id.in_([r.id for r in rows]), Task.step == "explain",
                        Task.status == "completed").distinct()):
                if official:
                    officials.setdefault(request_id, []).append(official)
        items = [{"code": r.code, "subject": r.subject, "unit": r.unit_code, "score": r.rating_score,
                  "comment": r.rating_comment, "rated_at": iso(r.rated_at), "explained_at": iso(r.explained_at),
                  "officials": sorted(officials.get(r.id, []))} for r in rows]
    return {"unit": unit, "max_score": max_score, "items": items, "total": total, "page": page, "per_page": per_page}


# -- files -------------------------------------------------------------------------------------


def _rows(report: dict) -> list[tuple[str, str, dict]]:
    """(unit code, label, figures) for the total and each breakdown row."""
    out = [(report["unit"], f"Tổng cộng: {report['unit_name']}", flat(report))]
    for row in report["breakdown"]:
        label = row["unit_name"] + (" (trực tiếp)" if row["scope"] == "own" else " (gồm đơn vị trực thuộc)")
        out.append((row["unit"], label, flat(row)))
    return out


def to_csv(report: dict) -> bytes:
    """UTF-8 with a byte order mark, so Excel opens the Vietnamese headers correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Tháng", "Mã đơn vị", "Đơn vị", *[header for _, header, _ in COLUMNS]])
    for code, label, figures in _rows(report):
        writer.writerow([report["month"], code, label, *["" if figures[k] is None else figures[k] for k, _, _ in COLUMNS]])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(report: dict) -> bytes:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = "Báo cáo tháng"
    sheet["A1"] = f"BÁO CÁO KẾT QUẢ TIẾP NHẬN, GIẢI TRÌNH THÁNG {report['month'][5:]}/{report['month'][:4]}"
    sheet["A1"].font = Font(bold=True, size=13)
    sheet["A2"] = f"Đơn vị: {report['unit_name']} ({report['unit']}); từ {report['period']['from']} đến " \
                  f"{report['period']['to']}; lập lúc {report['generated_at']}"
    header = ["Mã đơn vị", "Đơn vị", *[h for _, h, _ in COLUMNS]]
    sheet.append([])
    sheet.append(header)
    head_row = sheet.max_row
    for cell in sheet[head_row]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE7F3")
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for code, label, figures in _rows(report):
        sheet.append([code, label, *[figures[k] for k, _, _ in COLUMNS]])
        for index, (_, _, kind) in enumerate(COLUMNS, start=3):
            if kind == "float":
                sheet.cell(row=sheet.max_row, column=index).number_format = "0.00"
    sheet[f"A{head_row + 1}"].font = Font(bold=True)
    sheet[f"B{head_row + 1}"].font = Font(bold=True)
    sheet.column_dimensions["A"].width = 12
    sheet.column_dimensions["B"].width = 40
    for index in range(3, len(header) + 1):
        sheet.column_dimensions[get_column_letter(index)].width = 14
    sheet.row_dimensions[head_row].height = 60
    sheet.freeze_panes = sheet.cell(row=head_row + 1, column=3)

    notes = book.create_sheet("Ghi chú")
    notes.append(["Định nghĩa các chỉ tiêu"])
    notes["A1"].font = Font(bold=True)
    for _, text in DEFINITIONS:
        notes.append([text])
    notes.append([])
    notes.append(["Căn cứ từ chối", "Mã"])
    for key, text in REFUSAL_GROUNDS.items():
        notes.append([text, key])
    notes.column_dimensions["A"].width = 120

    charts = book.create_sheet("Biểu đồ")
    charts.append(["Chỉ tiêu", "Số hồ sơ"])
    for key in ("received", "accepted", "refused", "redirected", "explained_on_time", "explained_late", "open_at_end"):
        charts.append([next(h for k, h, _ in COLUMNS if k == key), report[key]])
    outcome = BarChart()
    outcome.title = "Kết quả tiếp nhận, giải trình"
    outcome.add_data(Reference(charts, min_col=2, min_row=1, max_row=8), titles_from_data=True)
    outcome.set_categories(Reference(charts, min_col=1, min_row=2, max_row=8))
    outcome.legend = None
    charts.add_chart(outcome, "D2")
    charts.append([])
    charts.append(["Mức độ hài lòng", "Số lượt"])
    first = charts.max_row
    for k in range(1, 6):
        charts.append([f"{k} sao", report["satisfaction_distribution"][str(k)]])
    satisfaction = BarChart()
    satisfaction.title = "Phân bố mức độ hài lòng"
    satisfaction.add_data(Reference(charts, min_col=2, min_row=first, max_row=first + 5), titles_from_data=True)
    satisfaction.set_categories(Reference(charts, min_col=1, min_row=first + 1, max_row=first + 5))
    satisfaction.legend = None
    charts.add_chart(satisfaction, "D20")
    charts.column_dimensions["A"].width = 42

    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def monthly_file(actor: Actor, unit: Any, month: Any, fmt: str) -> tuple[bytes, str, str]:
    """The monthly report as a file: (content, media type, file name)."""
    if fmt not in ("csv", "xlsx"):
        raise ValidationFailed("định dạng không hợp lệ (invalid format)", {"format": "json, xlsx hoặc csv"})
    report = monthly(actor, unit, month)
    content = to_xlsx(report) if fmt == "xlsx" else to_csv(report)
    return content, MEDIA_TYPES[fmt], f"bao-cao-giai-trinh-{report['unit']}-{report['month']}.{fmt}"
