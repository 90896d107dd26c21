"""Supervisors' use cases: escalations, the instance list with stuck reasons and saved filters,
the dashboard and heatmap, and the actions on a case (reassign, urge, suspend, terminate, move).
"""
from __future__ import annotations

import threading
import weakref
from datetime import date, datetime, time, timedelta
from typing import Any, Callable
from uuid import uuid4

from sqlalchemy import and_, bindparam, case, exists, func, not_, or_, select, union_all
from sqlalchemy.orm import aliased

from .. import attention, audit, calendar as cal, clock, db, forms, jobs, notifications, runtime
from .. import units as unit_tree
from ..accounts import ALL_UNITS, Actor, actor_by_username
from ..errors import Conflict, Forbidden, NotFound, ServiceError, ValidationFailed
from ..models import BOARD_TABLE as board
from ..models import (AuditEvent, Escalation, Job, Membership, Request, SavedFilter, Setting, Task, TaskCandidate,
                      Unit, User, WorkflowState)
from . import _common, documents
from ._common import iso

SUPERVISORS = ("supervisor", "head", "admin")
SUSPENSION_GROUNDS = {
    "requester_deceased": "Người yêu cầu chết, tổ chức chia, tách, sáp nhập, giải thể mà chưa có người kế thừa",
    "lost_capacity": "Người yêu cầu mất năng lực hành vi dân sự mà chưa có người đại diện",
    "unable": "Người yêu cầu ốm đau hoặc vì lý do khách quan khác không thể tiếp tục",
}


def _require_supervisor(actor: Actor) -> frozenset[str]:
    units = actor.units(*SUPERVISORS)
    if not units:
        raise Forbidden("chỉ lãnh đạo, thanh tra mới xem được (supervisors only)")
    return units


def _unit_filter(column, units: frozenset[str], unit: str | None):
    conditions = []
    if ALL_UNITS not in units:
        conditions.append(column.in_(sorted(units)))
    if unit:
        if ALL_UNITS not in units and unit not in units:
            raise Forbidden(f"không có quyền xem đơn vị {unit} (not your unit)")
        conditions.append(column == unit)
    return conditions


def list_escalations(actor: Actor, open_only: bool | None = None, unit: str | None = None,
                     page: int = 1, per_page: int = 50) -> dict:
    units = _require_supervisor(actor)
    with db.read_only() as session:
        query = select(Escalation).where(*_unit_filter(Escalation.unit_code, units, unit))
        if open_only is True:
            query = query.where(Escalation.resolved_at.is_(None))
        elif open_only is False:
            query = query.where(Escalation.resolved_at.is_not(None))
        total = _common.count(session, query)
        # Plain rows, not ORM objects with their request joined in (a page of 100 cost more to build than to find).
        rows = session.execute(
            query.with_only_columns(Escalation.id, Escalation.unit_code, Escalation.step, Escalation.level,
                                    Escalation.raised_at, Escalation.due_at, Escalation.owner_role,
                                    Escalation.resolved_at, Escalation.resolved_by, Escalation.note,
                                    Request.code, Request.subject, Request.assignee, Request.status)
            .join(Request, Request.id == Escalation.request_id)
            .order_by(Escalation.resolved_at.is_not(None), Escalation.raised_at.desc(), Escalation.id.desc())
            .offset((page - 1) * per_page).limit(per_page)
        ).all()
        items = [{
            "id": e.id, "request_code": e.code, "subject": e.subject, "unit": e.unit_code,
            "step": e.step, "level": e.level, "raised_at": iso(e.raised_at), "due_at": iso(e.due_at),
            "owner_role": e.owner_role, "resolved_at": iso(e.resolved_at), "resolved_by": e.resolved_by,
            "note": e.note, "assignee": e.assignee, "request_status": e.status,
        } for e in rows]
        return {"items": items, "total": total, "page": page, "per_page": per_page}


# -- stuck cases: computed from typed rows, each with why -------------------------------------

STUCK_REASONS = {
    "task_overdue": "Có công việc đã quá hạn",
    "incident": "Sự cố: bộ hẹn giờ hoặc kịch bản lỗi sau nhiều lần thử",
    "no_work": "Chưa kết thúc nhưng không còn công việc hay thời hạn nào đang chờ",
    "inactive": "Không có hoạt động trong nhiều ngày làm việc",
}
INACTIVE_SETTING = "stuck_inactive_working_days"
DEFAULT_INACTIVE_DAYS = 5
MAX_INACTIVE_DAYS = 250


def inactive_days(session) -> int:
    """N of "no activity for N working days": the administrators' setting, else 5."""
    row = session.get(Setting, INACTIVE_SETTING)
    try:
        value = int(row.value) if row is not None else DEFAULT_INACTIVE_DAYS
    except ValueError:
        value = DEFAULT_INACTIVE_DAYS
    return value if 1 <= value <= MAX_INACTIVE_DAYS else DEFAULT_INACTIVE_DAYS


def get_inactive_days() -> int:
    with db.read_only() as session:
        return inactive_days(session)


def set_inactive_days(actor: Actor, days) -> int:
    """Administrators choose after how many working days without activity a case counts as stuck."""
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị hệ thống được đổi cấu hình (administrators only)")
    if isinstance(days, str) and days.strip().isdigit():
        days = int(days.strip())
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_INACTIVE_DAYS:
        raise ValidationFailed("số ngày không hợp lệ", {"days": f"Số nguyên từ 1 đến {MAX_INACTIVE_DAYS} (integer)."})
    with db.transaction() as session:
        before = inactive_days(session)
        row = session.get(Setting, INACTIVE_SETTING)
        if row is None:
            session.add(Setting(key=INACTIVE_SETTING, value=str(days)))
        else:
            row.value = str(days)
        audit.record(session, "setting_changed", actor=actor.username, public=False,
                     before={INACTIVE_SETTING: before}, after={INACTIVE_SETTING: days})
    return days


def inactive_cutoff(calendar: cal.WorkingCalendar, now: datetime, days: int) -> datetime:
    """Last activity before this instant means N or more working days without any.

    A case last touched on day D has been idle for ``working_days_between(D, today)`` working
    days; that reaches N exactly when D is on or before the N-th working day before today.
    """
    day = cal.local_date(now)
    counted = 0
    while counted < days:
        day -= timedelta(days=1)
        if calendar.is_working_day(day):
            counted += 1
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=cal.LOCAL_TZ)


def _reason_conditions(now: datetime, cutoff: datetime) -> dict:
    """One SQL condition per stuck reason, on columns of the live case's row (engine/attention.py).

    Each is true or false, never NULL, so that "not stuck" is exactly the rest; none reads the
    request's other columns, so a count of stuck cases reads ix_requests_attention alone. An
    incident is read from the jobs (few, from their index), and so is "nothing waits" for a
    case with one, since its failed job counts as pending work in ``work_pending``.
    """
    return {
        "task_overdue": and_(Request.task_due_at.is_not(None), Request.task_due_at < now),
        "incident": Request.id.in_(_INCIDENT_CASES),
        "no_work": or_(Request.work_pending.is_(False), Request.id.in_(_IDLE_INCIDENT_CASES)),
        "inactive": Request.last_activity_at < cutoff,
    }


def _idle_incident_cases():
    """Cases with an incident and nothing else that waits: no open task, no waiting or paused
    job, and not waiting for the requester."""
    case_, other_job = aliased(Request), aliased(Job)
    return (select(Job.request_id).join(case_, case_.id == Job.request_id)
            .where(Job.status == "incident", case_.status != "needs_info",
                   not_(exists().where(Task.request_id == Job.request_id, Task.status == "open")),
                   not_(exists().where(other_job.request_id == Job.request_id,
                                       other_job.status.in_(("waiting", "paused"))))))


# Built once: they do not depend on the instant, and aliasing costs more than running them.
_INCIDENT_CASES = attention.incident_cases()
_IDLE_INCIDENT_CASES = _idle_incident_cases()


def _live_case():
    # Written as ix_requests_attention's condition (models.LIVE_CASE_SQL), so the planner may use it.
    return and_(Request.closed == False, Request.suspended_at.is_(None))  # noqa: E712


def _stuck_condition(now: datetime, cutoff: datetime | None = None, reason: str | None = None):
    """Open cases that cannot move on their own; with ``reason``, only those stuck for that reason."""
    conditions = _reason_conditions(now, cutoff or now)
    if cutoff is None:
        conditions.pop("inactive")
    # The column tests before the incident look-ups: most cases are decided by the first ones.
    chosen = [conditions[reason]] if reason else [
        conditions[name] for name in ("task_overdue", "inactive", "no_work", "incident") if name in conditions]
    return and_(_live_case(), or_(*chosen))


# -- the instance list and its filters ---------------------------------------------------------

FILTER_FIELDS = ("status", "step", "unit", "assignee", "overdue", "stuck", "reason", "incident",
                 "received_from", "received_to", "closed", "q")
_TEXT_LIMITS = {"status": 24, "step": 64, "unit": 32, "assignee": 64, "q": 100}
_BOOLEAN_FIELDS = ("overdue", "stuck", "incident", "closed")


def parse_filter(raw) -> dict:
    """Validate instance-list filter values (from a query string, a form or JSON) into typed ones.

    Unknown keys are ignored; empty values mean "any". Errors name the field.
    """
    raw = raw or {}
    out: dict = {}
    fields: dict[str, str] = {}
    for name in FILTER_FIELDS:
        value = raw.get(name)
        if value is None or value == "":
            continue
        if name in _TEXT_LIMITS:
            if not isinstance(value, str) or len(value) > _TEXT_LIMITS[name] or forms.control_characters(value):
                fields[name] = f"Chuỗi tối đa {_TEXT_LIMITS[name]} ký tự (string)."
            else:
                out[name] = forms.normalize(value.strip())
        elif name in _BOOLEAN_FIELDS:
            if isinstance(value, bool):
                out[name] = value
            elif isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                out[name] = True
            elif isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                out[name] = False
            else:
                fields[name] = "true hoặc false (boolean)."
        elif name == "reason":
            if not isinstance(value, str) or value not in STUCK_REASONS:
                fields[name] = "Một trong: " + ", ".join(STUCK_REASONS)
            else:
                out[name] = value
        else:  # received_from, received_to
            try:
                out[name] = date.fromisoformat(str(value)).isoformat()
            except ValueError:
                fields[name] = "Ngày dạng YYYY-MM-DD (date)."
    if not fields and out.get("received_from") and out.get("received_to") \
            and out["received_from"] > out["received_to"]:
        fields["received_to"] = "Phải từ ngày bắt đầu trở đi (not before received_from)."
    if fields:
        raise ValidationFailed("bộ lọc không hợp lệ (invalid filter)", fields)
    return {k: v for k, v in out.items() if v != ""}


def _filtered(actor: Actor, units: frozenset[str], criteria: dict, now: datetime, cutoff: datetime):
    query = select(Request).where(*_unit_filter(Request.unit_code, units, criteria.get("unit")))
    if criteria.get("status"):
        query = query.where(Request.status == criteria["status"])
    if criteria.get("step"):
        query = query.where(Request.current_step == criteria["step"])
    if criteria.get("assignee"):
        query = query.where(Request.assignee == criteria["assignee"])
    if criteria.get("overdue") is not None:
        # Equalities, not IS: PostgreSQL applies its statistics of the two columns together only
        # to those (migration 0011), and without them it takes the overdue index and sorts every
        # overdue case instead of reading ix_requests_list in order (34 -> 1 ms at a city's 25,000).
        query = query.where(Request.overdue == bool(criteria["overdue"]), Request.closed == False)  # noqa: E712
    if criteria.get("closed") is not None:
        query = query.where(Request.closed.is_(criteria["closed"]))
    if criteria.get("stuck") or criteria.get("reason"):
        query = query.where(_stuck_condition(now, cutoff, criteria.get("reason")))
    elif criteria.get("stuck") is False:
        query = query.where(not_(_stuck_condition(now, cutoff)))
    incident = _reason_conditions(now, cutoff)["incident"]
    if criteria.get("incident") is True:
        query = query.where(incident)
    elif criteria.get("incident") is False:
        query = query.where(not_(incident))
    if criteria.get("received_from"):
        first = date.fromisoformat(criteria["received_from"])
        query = query.where(Request.received_at >= datetime.combine(first, time(0, 0), tzinfo=cal.LOCAL_TZ))
    if criteria.get("received_to"):
        last = date.fromisoformat(criteria["received_to"]) + timedelta(days=1)
        query = query.where(Request.received_at < datetime.combine(last, time(0, 0), tzinfo=cal.LOCAL_TZ))
    if criteria.get("q"):
        q = criteria["q"].strip()
        query = query.where(or_(Request.code == q, Request.subject.ilike(f"%{q[:100]}%")))
    return query


def reason_labels(codes, days: int) -> list[dict]:
    out = []
    for code in codes:
        label = STUCK_REASONS[code]
        if code == "inactive":
            label = f"Không có hoạt động từ {days} ngày làm việc trở lên"
        out.append({"code": code, "label": label})
    return out


# The columns a list shows: not the content, requester, explanation or JSON of every row (a page
# of 200 full rows cost more to load than to find).
_LISTED = (Request.code, Request.subject, Request.unit_code, Request.status, Request.current_step, Request.assignee,
           Request.received_at, Request.deadline_at, Request.overdue, Request.extended, Request.suspended_at,
           Request.closed, Request.last_activity_at)


def list_instances(actor: Actor, status: str | None = None, overdue: bool | None = None, stuck: bool | None = None,
                   unit: str | None = None, closed: bool | None = None, q: str | None = None,
                   page: int = 1, per_page: int = 50, known_total: int | None = None, **more) -> dict:
    """Cases of the units the actor supervises, with why each open one is stuck (if it is).

    Extra filters (``step``, ``assignee``, ``reason``, ``incident``, ``received_from``,
    ``received_to``) as in :func:`parse_filter`. Everything is one SQL statement over typed
    columns; the working-days threshold becomes an instant before the query. ``known_total``:
    the caller has just counted these cases (the dashboard), so they are not counted again.
    """
    units = _require_supervisor(actor)
    criteria = parse_filter({"status": status, "overdue": overdue, "stuck": stuck, "unit": unit, "closed": closed,
                             "q": q, **more})
    now = clock.now()
    with db.read_only() as session:
        calendar = cal.load_calendar(session)
        days = inactive_days(session)
        cutoff = inactive_cutoff(calendar, now, days)
        query = _filtered(actor, units, criteria, now, cutoff)
        total = _common.count(session, query) if known_total is None else known_total
        live = _live_case()
        reasons = {name: and_(live, condition).label(f"r_{name}")
                   for name, condition in _reason_conditions(now, cutoff).items()}
        # Plain rows of the listed columns, not ORM objects (200 of those cost more to build than to find).
        rows = session.execute(
            query.with_only_columns(*_LISTED, *reasons.values())
            # This order is the one ix_requests_list holds (and its per-unit and per-status twins).
            .order_by(Request.closed, Request.deadline_at.is_(None), Request.deadline_at, Request.id.desc())
            .offset((page - 1) * per_page).limit(per_page)
        ).all()
        days_left: dict = {}  # deadlines fall at the end of a day: many rows share one

        def working_days_left(deadline_at):
            key = (cal.local_date(deadline_at), deadline_at < now)
            if key not in days_left:
                days_left[key] = cal.working_days_left(now, deadline_at, calendar)
            return days_left[key]

        items = []
        for row in rows:
            r = row._mapping
            stuck_codes = [name for name, flag in zip(reasons, row[len(_LISTED):]) if flag]
            items.append({
                "code": r["code"], "subject": r["subject"], "unit": r["unit_code"], "status": r["status"],
                "current_step": r["current_step"], "assignee": r["assignee"], "received_at": iso(r["received_at"]),
                "deadline_at": iso(r["deadline_at"]), "overdue": bool(r["overdue"]), "extended": bool(r["extended"]),
                "suspended": r["suspended_at"] is not None, "closed": bool(r["closed"]),
                "last_activity_at": iso(r["last_activity_at"]),
                "working_days_left": working_days_left(r["deadline_at"]) if r["deadline_at"] else None,
                "stuck": bool(stuck_codes), "stuck_reasons": reason_labels(stuck_codes, days),
            })
        return {"items": items, "total": total, "page": page, "per_page": per_page, "filter": criteria,
                "inactive_days": days}


def count_instances(actor: Actor, unit: str | None = None, **criteria) -> int:
    """How many cases :func:`list_instances` would list with these filters (no page read)."""
    units = _require_supervisor(actor)
    criteria = parse_filter({"unit": unit, **criteria})
    now = clock.now()
    with db.read_only() as session:
        cutoff = inactive_cutoff(cal.load_calendar(session), now, inactive_days(session))
        return _common.count(session, _filtered(actor, units, criteria, now, cutoff))


# -- the "all" tab's count: the settled closed cases counted once ---------------------------------

# A closed case never reopens and its row is never deleted (retention erases its content, not the
# row), and ``closed_at`` is the instant of the transaction that closed it. So the closed cases of a
# scope closed more than an hour ago can no longer change: their number is kept, per process,
# database and scope, and only the cases closed since are counted each time (ix_requests_closed,
# a short range). A city's "all" count had read 1.1 million index entries on every page (9 ms).
_SETTLED_AFTER = timedelta(hours=1)  # longer than any transaction lasts
_SETTLED_RENEW = timedelta(days=1)  # how far behind the kept instant may fall before it moves up
_settled: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_settled_lock = threading.Lock()


# The units of the recent closings, city-wide, counted here. Given a unit (or a GROUP BY unit)
# SQLite's planner cannot tell that they are few, and reads all the unit's (or the city's) closed
# cases through ix_requests_open_unit instead of this short range of ix_requests_closed (16 ms for a
# unit, 1.6 s grouped). A case closed without a closing instant (by hand) is never settled: it is
# counted each time. Two ranges of that index, not one OR: PostgreSQL reads an OR of them as a
# filter over every closed case (200,000 index entries, 10 ms, for a fifth of a city).
_CLOSED_SINCE = union_all(
    select(Request.unit_code).where(Request.closed.is_(True), Request.closed_at.is_(None)),
    select(Request.unit_code).where(Request.closed.is_(True), Request.closed_at >= bindparam("instant")))


def _count_cases(session, *conditions) -> int:
    return session.execute(select(func.count()).select_from(Request).where(*conditions)).scalar_one()


def _closed_count(session, units: frozenset[str], unit: str | None, now: datetime) -> int:
    scope = _unit_filter(Request.unit_code, units, unit)

    def in_scope(code: str) -> bool:
        return (ALL_UNITS in units or code in units) and (unit is None or code == unit)

    def closed_since(instant: datetime) -> int:
        return sum(1 for code in session.execute(_CLOSED_SINCE, {"instant": instant}).scalars() if in_scope(code))

    key = ((ALL_UNITS,) if ALL_UNITS in units else tuple(sorted(units)), unit)
    with _settled_lock:
        entry = _settled.setdefault(db.get_engine(), {}).get(key)
    if entry is None or entry[0] > now - _SETTLED_AFTER or entry[0] < now - _SETTLED_AFTER - _SETTLED_RENEW:
        # Also when the clock went back (a test's, an operator's): the kept instant is then too recent.
        instant = now - _SETTLED_AFTER
        # Every case less the open ones: both counts lead with the unit in their index when there is one.
        every = _count_cases(session, *scope) - _count_cases(session, Request.closed.is_(False), *scope)
        entry = (instant, every - closed_since(instant))
        with _settled_lock:
            _settled.setdefault(db.get_engine(), {})[key] = entry
    instant, settled = entry
    return settled + closed_since(instant)


def count_all(actor: Actor, unit: str | None = None, open_cases: int | None = None) -> int:
    """Every case of the actor's units (the "all" tab): the open ones (``open_cases`` if the caller
    has just counted them) and the closed ones."""
    units = _require_supervisor(actor)
    scope = _unit_filter(Request.unit_code, units, unit)
    now = clock.now()
    with db.read_only() as session:
        if open_cases is None:
            open_cases = _count_cases(session, Request.closed.is_(False), *scope)
        return open_cases + _closed_count(session, units, unit, now)


# The dashboard's tabs: which cases each lists.
OVERVIEW_TABS = {
    "overdue": {"overdue": True},
    "stuck": {"stuck": True},
    "suspended": {"status": "suspended"},
    "open": {"closed": False},
    "all": {},
}


def overview(actor: Actor, unit: str | None = None, show: str = "overdue") -> dict:
    """Everything the supervisors' dashboard shows: each tab's count, the open escalations, the
    cases of the chosen tab and the per-unit figures.

    The open, overdue and stuck counts are the per-unit figures summed (one pass over the open
    cases instead of a count each), and the chosen tab's list reuses its count.
    """
    show = show if show in OVERVIEW_TABS else "overdue"

    def lists() -> tuple:
        # What does not wait for the board's figures: read in this thread once its share of the
        # board is counted, while another connection still counts the stuck cases (``dashboard``'s
        # ``meanwhile``). The list's total is the board's count of its tab, filled in below.
        return (count_instances(actor, unit=unit, **OVERVIEW_TABS["suspended"]),
                list_escalations(actor, open_only=True, unit=unit, per_page=100),
                list_instances(actor, unit=unit, per_page=200, known_total=0, **OVERVIEW_TABS[show]))

    board, (suspended, escalations, cases) = dashboard(actor, unit=unit, meanwhile=lists)
    counts = {name: board["totals"][name] for name in ("overdue", "stuck", "open")}
    counts["suspended"] = suspended
    counts["all"] = count_all(actor, unit=unit, open_cases=counts["open"])
    counts = {name: counts[name] for name in OVERVIEW_TABS}
    cases["total"] = counts[show]
    return {"counts": counts, "escalations": escalations, "cases": cases, "board": board, "show": show}


def stuck_reasons(code: str, actor: Actor) -> list[dict]:
    """Why one case is stuck (empty when it is not), by the same conditions as the list."""
    units = _require_supervisor(actor)
    now = clock.now()
    with db.read_only() as session:
        days = inactive_days(session)
        cutoff = inactive_cutoff(cal.load_calendar(session), now, days)
        live = _live_case()
        reasons = {name: and_(live, condition).label(f"r_{name}")
                   for name, condition in _reason_conditions(now, cutoff).items()}
        row = session.execute(select(*reasons.values())
                              .where(Request.code == code, *_unit_filter(Request.unit_code, units, None))).first()
        return reason_labels([name for name, flag in zip(reasons, row) if flag], days) if row else []


# -- saved filters ---------------------------------------------------------------------------

SHAREABLE_ROLES = ("supervisor", "head", "admin", "official", "reception")


def _filter_dict(row: SavedFilter, actor: Actor) -> dict:
    return {"id": row.id, "name": row.name, "params": row.params, "owner": row.owner,
            "shared_with_role": row.shared_with_role, "unit": row.unit_code,
            "mine": row.owner == actor.username, "created_at": iso(row.created_at)}


def save_filter(actor: Actor, name, params, shared_with_role: str | None = None) -> dict:
    """Keep an instance-list filter under a name, for oneself or for everyone with a role."""
    units = _require_supervisor(actor)
    fields = {}
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100 or forms.control_characters(name):
        fields["name"] = "Tên từ 1 đến 100 ký tự (1..100 characters)."
    if shared_with_role not in (None, "") and (not isinstance(shared_with_role, str)
                                               or shared_with_role not in SHAREABLE_ROLES):
        fields["shared_with_role"] = "Một trong: " + ", ".join(SHAREABLE_ROLES)
    if fields:
        raise ValidationFailed("bộ lọc chưa hợp lệ (invalid saved filter)", fields)
    criteria = parse_filter(params if isinstance(params, dict) else {})
    if criteria.get("unit"):
        _unit_filter(Request.unit_code, units, criteria["unit"])  # one may share only what one may see
    with db.transaction() as session:
        row = SavedFilter(owner=actor.username, name=forms.normalize(name.strip()), params=criteria,
                          shared_with_role=shared_with_role or None, unit_code=criteria.get("unit"),
                          created_at=clock.now())
        session.add(row)
        session.flush()
        audit.record(session, "filter_saved", actor=actor.username, public=False,
                     after={"id": row.id, "name": row.name, "params": criteria, "shared_with_role": row.shared_with_role})
        return _filter_dict(row, actor)


def list_filters(actor: Actor) -> list[dict]:
    """The actor's own filters and those shared with a role they hold (for a unit they may see)."""
    _require_supervisor(actor)
    roles = [role for role, units in actor.roles.items() if units]
    with db.read_only() as session:
        rows = session.execute(
            select(SavedFilter).where(or_(SavedFilter.owner == actor.username,
                                          SavedFilter.shared_with_role.in_(roles)))
            .order_by(SavedFilter.name, SavedFilter.id)
        ).scalars().all()
        return [_filter_dict(row, actor) for row in rows
                if row.owner == actor.username or row.unit_code is None
                or actor.has_role(row.shared_with_role, row.unit_code)]


def get_filter(actor: Actor, filter_id: int) -> dict:
    found = next((f for f in list_filters(actor) if f["id"] == filter_id), None)
    if found is None:
        raise NotFound("không có bộ lọc này (unknown saved filter)")
    return found


def delete_filter(actor: Actor, filter_id: int) -> None:
    with db.transaction() as session:
        row = session.get(SavedFilter, filter_id)
        if row is None:
            raise NotFound("không có bộ lọc này (unknown saved filter)")
        if row.owner != actor.username and not actor.has_role("admin"):
            raise Forbidden("chỉ người tạo được xóa bộ lọc (only its owner may delete it)")
        audit.record(session, "filter_deleted", actor=actor.username, public=False,
                     before={"id": row.id, "name": row.name, "params": row.params})
        session.delete(row)


def _may_suspend(actor: Actor, request: Request) -> None:
    if not (actor.has_role("head", request.unit_code) or actor.has_role("supervisor", request.unit_code)):
        raise Forbidden("chỉ thủ trưởng đơn vị hoặc thanh tra được tạm đình chỉ (head or supervisor only)")


def suspend(code: str, actor: Actor, ground: str, note: str | None = None) -> dict:
    """Art. 14: the case stops and its deadline clock pauses until it resumes."""
    if not isinstance(ground, str) or ground not in SUSPENSION_GROUNDS:
        raise ValidationFailed("căn cứ tạm đình chỉ không hợp lệ", {"ground": "Một trong: " + ", ".join(SUSPENSION_GROUNDS)})
    if note is not None and (not isinstance(note, str) or len(note) > 5000):
        raise ValidationFailed("ghi chú không hợp lệ", {"note": "Tối đa 5000 ký tự."})
    with db.transaction() as session:
        request = _common.request_for_update(session, code)
        _may_suspend(actor, request)
        if request.closed or request.status in ("explained", "published"):
            raise Conflict("yêu cầu đã kết thúc (request closed)")
        if request.suspended_at is not None:
            raise Conflict("yêu cầu đang tạm đình chỉ (already suspended)")
        before = request.status
        request.suspended_at = clock.now()
        request.outcome = dict(request.outcome or {}, status_before_suspension=before)
        request.status = "suspended"
        request.overdue = False
        for job in jobs.for_request(session, request.id, ("waiting",)):
            job.status = "paused"
            jobs.revoke_lease(job)
        audit.record(session, "suspended", actor=actor.username, request_id=request.id, note=SUSPENSION_GROUNDS[ground]
                     + (f". {note}" if note else ""), before={"status": before}, after={"status": "suspended", "ground": ground})
        notifications.case_event(session, request, "suspended", SUSPENSION_GROUNDS[ground] + (f". {note}" if note else ""))
        documents.issue_notice(session, request, "suspension_notice", actor, ground=SUSPENSION_GROUNDS[ground], note=note)
        from .requests import public_summary
        return public_summary(session, request)


def resume(code: str, actor: Actor, note: str | None = None) -> dict:
    """The reason ended: deadlines move by the time the case stood still, timers re-arm."""
    if note is not None and (not isinstance(note, str) or len(note) > 5000):
        raise ValidationFailed("ghi chú không hợp lệ", {"note": "Tối đa 5000 ký tự."})
    with db.transaction() as session:
        request = _common.request_for_update(session, code)
        _may_suspend(actor, request)
        if request.suspended_at is None:
            raise Conflict("yêu cầu không bị tạm đình chỉ (not suspended)")
        calendar = cal.load_calendar(session)
        now = clock.now()
        first = cal.local_date(request.suspended_at)
        last = cal.local_date(now)
        calendar_days = (last - first).days
        working_days = max(0, calendar.working_days_between(first, last))
        new_deadlines = {}
        for name, value in (request.deadlines or {}).items():
            old = datetime.fromisoformat(value)
            day = cal.local_date(old)
            # Working-day periods move by working days, day periods by calendar days (then rolled forward).
            moved = calendar.add_working_days(day, working_days) if name == "acknowledge_by" else \
                calendar.add_days(day, calendar_days)
            new_deadlines[name] = cal.end_of_day(moved).isoformat()
        running, state = _common.load_running(session, request)
        runtime.update_data(running, {"deadlines": new_deadlines})
        shifts = {}
        for timer in runtime.waiting_timers(running.workflow):
            for name, old_value in (request.deadlines or {}).items():
                if datetime.fromisoformat(old_value) == timer.due_at:
                    shifts[timer.spiff_task_id] = new_deadlines[name]
        runtime.shift_timers(running, shifts)
        for job in jobs.for_request(session, request.id, ("paused",)):
            job.status = "waiting" if job.kind == "timer" else "done"
        before_deadlines = dict(request.deadlines or {})
        request.suspended_at = None
        _common.save_running(session, request, running, state, actor=actor.username)
        outcome = dict(request.outcome or {})
        outcome.pop("status_before_suspension", None)
        request.outcome = outcome
        shown = new_deadlines.get("explain_by") or new_deadlines.get("acknowledge_by") or ""
        audit.record(session, "resumed", actor=actor.username, request_id=request.id,
                     note=". ".join(x for x in (f"Hạn mới: {shown[:10]}" if shown else "", note or "") if x) or None,
                     before={"deadlines": before_deadlines}, after={"status": request.status, "deadlines": request.deadlines})
        notifications.case_event(session, request, "resumed", note)
        documents.issue_notice(session, request, "resumption_notice", actor, note=note,
                               new_deadline=new_deadlines.get("explain_by") or new_deadlines.get("acknowledge_by"))
        from .requests import public_summary
        result = public_summary(session, request)
    from .. import timers
    timers.wake()
    return result


# -- incidents: timers that failed their retries ---------------------------------------------


def incidents(code: str, actor: Actor) -> list[dict]:
    """The case's failed jobs, newest first, for the head or supervisor of its unit."""
    with db.read_only() as session:
        request = session.execute(select(Request).where(Request.code == code)).scalar_one_or_none()
        if request is None:
            raise NotFound(f"không có yêu cầu {code} (unknown request)")
        _may_suspend(actor, request)
        rows = session.execute(select(Job).where(Job.request_id == request.id, Job.status == "incident")
                               .order_by(Job.id.desc())).scalars()
        return [{"id": job.id, "step": job.step, "kind": job.kind, "attempts": job.attempts,
                 "due_at": iso(job.due_at), "last_error": job.last_error} for job in rows]


def retry_incident(code: str, job_id: int, actor: Actor, note: str | None = None) -> None:
    """Put a failed job back in the queue, due now; audited with who and why."""
    if note is not None and (not isinstance(note, str) or len(note) > 5000):
        raise ValidationFailed("ghi chú không hợp lệ", {"note": "Tối đa 5000 ký tự."})
    with db.transaction() as session:
        request = _common.request_for_update(session, code)
        _may_suspend(actor, request)
        job = next((j for j in jobs.for_request(session, request.id, ("incident",)) if j.id == job_id), None)
        if job is None:
            raise NotFound("không có sự cố này (unknown incident)")
        job.status = "waiting"
        job.attempts = 0
        job.due_at = clock.now()
        jobs.revoke_lease(job)
        audit.record(session, "incident_retried", actor=actor.username, request_id=request.id, step=job.step,
                     public=False, note=note, before={"job": job.id, "last_error": (job.last_error or "")[:500]})
    from .. import timers

    timers.wake()


# -- actions on a case: each needs a reason, is one transaction with its audit event -----------

TERMINATION_GROUNDS = {
    "no_successor": "Người yêu cầu chết, tổ chức giải thể hoặc mất năng lực hành vi mà không có người kế thừa, "
                    "người đại diện (khoản 2 Điều 14 NĐ 59/2019)",
    "withdrawn": "Người yêu cầu rút toàn bộ yêu cầu giải trình (khoản 2 Điều 14 NĐ 59/2019)",
}
# Data that stays as the case stands when a token moves: the legal clock never restarts.
_KEPT_ON_MOVE = ("deadlines", "extensions_used", "periods", "request")


def _reason(note, field: str = "note") -> str:
    """Every supervisor's action says why: 3 to 5000 characters, no control characters."""
    if not isinstance(note, str) or not 3 <= len(note.strip()) <= 5000:
        raise ValidationFailed("cần nêu lý do (a reason is required)", {field: "Lý do từ 3 đến 5000 ký tự (required)."})
    note = forms.normalize(note.strip())
    if forms.control_characters(note):
        raise ValidationFailed("lý do không hợp lệ", forms.control_characters(note, field))
    return note


def _open_task(session, request: Request, task_id: str | None) -> Task:
    """The named open task of the case, or its main open task (the current step)."""
    rows = session.execute(select(Task).where(Task.request_id == request.id, Task.status == "open")
                           .order_by(Task.created_at, Task.id).with_for_update(of=Task)).scalars().all()
    if task_id:
        task = next((t for t in rows if t.id == task_id), None)
        if task is None:
            raise NotFound("không có công việc đang mở này trong hồ sơ (no such open task in this case)")
        return task
    if not rows:
        raise Conflict("hồ sơ không có công việc đang mở (no open task)")
    main = [t for t in rows if t.step == request.current_step]
    return (main or rows)[0]


def _person(session, username, field: str) -> Actor:
    if not isinstance(username, str) or not 1 <= len(username) <= 64:
        raise ValidationFailed("thiếu người nhận", {field: "Tên đăng nhập (username)."})
    person = actor_by_username(session, username.strip())
    if person is None or not person.is_official:
        raise ValidationFailed("không có cán bộ này", {field: f"Không có cán bộ {username} (unknown official)."})
    from ..models import User
    active = session.execute(select(User.is_active).where(User.username == person.username)).scalar_one()
    if not active:
        raise ValidationFailed("tài khoản đã khóa", {field: f"Tài khoản {username} đã bị khóa (inactive)."})
    return person


def _notify_urge(session, request: Request, task: Task, actor: Actor, note: str) -> None:
    """The urge (đôn đốc) reaches its recipients in this same transaction: an in-app notice and
    an outbox email each. An unclaimed task urges everyone who may take it: the holders of its
    role in its unit and the people added to it."""
    if task.assignee:
        recipients = [task.assignee]
    else:
        holders = session.execute(
            select(User.username).join(Membership, Membership.user_id == User.id)
            .where(Membership.role == task.candidate_role, Membership.unit_code == task.unit_code,
                   User.is_active.is_(True))
        ).scalars().all()
        added = session.execute(select(TaskCandidate.username).where(TaskCandidate.task_id == task.id)).scalars().all()
        recipients = sorted(set(holders) | set(added))
    for username in recipients:
        notifications.notify_urge(session, request, username, note, actor.username)


def _open_task_to_act_on(session, code: str, actor: Actor, task_id: str | None) -> tuple[Request, Task]:
    """Reassign, add a candidate, urge: the case locked, the actor a supervisor of its unit, the
    case still open, and the open task meant (the only one, or ``task_id``)."""
    request = _common.request_for_update(session, code)
    _may_suspend(actor, request)
    if request.closed:
        raise Conflict("yêu cầu đã kết thúc (request closed)")
    return request, _open_task(session, request, task_id)


def reassign(code: str, actor: Actor, assignee, note, task_id: str | None = None) -> dict:
    """Give an open task to another official who holds its role in its unit; nothing is suspended."""
    note = _reason(note)
    with db.transaction() as session:
        request, task = _open_task_to_act_on(session, code, actor, task_id)
        person = _person(session, assignee, "assignee")
        if not person.has_role(task.candidate_role, task.unit_code):
            raise ValidationFailed("người nhận không có vai trò của công việc này", {
                "assignee": f"{person.username} không giữ vai trò {task.candidate_role} tại {task.unit_code}."})
        before = task.assignee
        if before == person.username:
            raise Conflict(f"công việc đã do {person.username} xử lý (already assigned)")
        task.assignee = person.username
        definition = _common.definition(session, request.definition_id)
        expression = (definition.manifest["tasks"].get(task.step) or {}).get("assignee_expr")
        if expression and expression.isidentifier():
            # The next rounds of this step (a returned draft, a dialogue) follow the new assignee too.
            running, state = _common.load_running(session, request)
            runtime.update_data(running, {expression: person.username})
            _common.save_running(session, request, running, state, actor=actor.username)
        elif task.step == request.current_step:
            request.assignee = person.username
            request.last_activity_at = clock.now()
        audit.record(session, "reassigned", actor=actor.username, request_id=request.id, step=task.step,
                     public=False, note=note, before={"task": task.id, "assignee": before},
                     after={"task": task.id, "assignee": person.username})
        notifications.notify_handed_over(session, request, person.username, task.title, note, actor.username)
        return {"task": task.id, "step": task.step, "assignee": task.assignee, "request_code": request.code}


def add_candidate(code: str, actor: Actor, username, note, task_id: str | None = None) -> dict:
    """Let one more official of the unit see and take an open task, beside its role."""
    note = _reason(note)
    with db.transaction() as session:
        request, task = _open_task_to_act_on(session, code, actor, task_id)
        person = _person(session, username, "username")
        if not person.handles_cases_of(task.unit_code):
            raise ValidationFailed("cán bộ thuộc đơn vị khác", {
                "username": f"{person.username} không thuộc đơn vị {task.unit_code} (another unit)."})
        exists_already = session.execute(select(TaskCandidate.id).where(
            TaskCandidate.task_id == task.id, TaskCandidate.username == person.username)).first()
        if exists_already or task.assignee == person.username:
            raise Conflict(f"{person.username} đã có thể xử lý công việc này (already a candidate)")
        session.add(TaskCandidate(task_id=task.id, username=person.username, added_by=actor.username,
                                  added_at=clock.now()))
        audit.record(session, "candidate_added", actor=actor.username, request_id=request.id, step=task.step,
                     public=False, note=note, after={"task": task.id, "candidate": person.username})
        notifications.notify_handed_over(session, request, person.username, task.title, note, actor.username)
        return {"task": task.id, "step": task.step, "candidate": person.username, "request_code": request.code}


def urge(code: str, actor: Actor, note, task_id: str | None = None) -> dict:
    """Đôn đốc: a note to whoever holds the open task, kept in the trail and shown on the task."""
    note = _reason(note)
    with db.transaction() as session:
        request, task = _open_task_to_act_on(session, code, actor, task_id)
        to = task.assignee or f"role:{task.candidate_role}"
        audit.record(session, "urged", actor=actor.username, request_id=request.id, step=task.step, public=False,
                     note=note, after={"task": task.id, "to": to})
        _notify_urge(session, request, task, actor, note)
        return {"task": task.id, "step": task.step, "to": to, "request_code": request.code}


def urges_for_task(session, task: Task) -> list[dict]:
    """The urges a task received, newest first (shown to its assignee on the task page)."""
    events = session.execute(select(AuditEvent).where(AuditEvent.request_id == task.request_id,
                                                      AuditEvent.action == "urged")
                             .order_by(AuditEvent.id.desc())).scalars()
    return [{"at": iso(e.at), "by": e.actor, "note": e.note} for e in events
            if (e.after or {}).get("task") == task.id]


def retry_incidents(code: str, actor: Actor, note) -> int:
    """Every incident of a case back in the queue (the bulk action's unit of work)."""
    note = _reason(note)
    found = incidents(code, actor)
    if not found:
        raise Conflict("hồ sơ không có sự cố (no incident)")
    for incident in found:
        retry_incident(code, incident["id"], actor, note)
    return len(found)


def terminate(code: str, actor: Actor, ground, note) -> dict:
    """Art. 14: end the case for good (no successor or representative, or a whole withdrawal)."""
    if not isinstance(ground, str) or ground not in TERMINATION_GROUNDS:
        raise ValidationFailed("căn cứ đình chỉ không hợp lệ", {"ground": "Một trong: " + ", ".join(TERMINATION_GROUNDS)})
    note = _reason(note)
    with db.transaction() as session:
        request = _common.request_for_update(session, code)
        _may_suspend(actor, request)
        if request.closed or request.status in ("explained", "published", "terminated"):
            raise Conflict(f"yêu cầu đang ở trạng thái {request.status}, không thể đình chỉ (cannot terminate now)")
        running, state = _common.load_running(session, request)
        before = request.status
        runtime.cancel(running)
        _common.save_running(session, request, running, state, actor=actor.username)
        now = clock.now()
        for job in jobs.for_request(session, request.id, ("waiting", "paused", "incident")):
            job.status = "done"
            jobs.revoke_lease(job)
        for escalation in session.execute(select(Escalation).where(Escalation.request_id == request.id,
                                                                   Escalation.resolved_at.is_(None))).scalars():
            escalation.resolved_at = now
            escalation.resolved_by = actor.username
            escalation.note = "Đình chỉ giải trình"
        request.status = "terminated"
        request.closed = True
        request.closed_at = now
        request.suspended_at = None
        request.deadline_at = None
        request.overdue = False
        request.current_step = None
        request.assignee = None
        request.outcome = {"decision": "terminated", "ground": ground, "note": note}
        audit.record(session, "terminated", actor=actor.username, request_id=request.id,
                     note=f"{TERMINATION_GROUNDS[ground]}. {note}", before={"status": before},
                     after={"status": "terminated", "ground": ground})
        # The requester hears it (art. 14 notice, in writing) like any other end of the case.
        notifications.case_event(session, request, "terminated", f"{TERMINATION_GROUNDS[ground]}. {note}")
        documents.issue_notice(session, request, "termination_notice", actor,
                               reason=f"{TERMINATION_GROUNDS[ground]}. {note}")
        from .requests import public_summary
        return public_summary(session, request)


def move_token(code: str, actor: Actor, to, note) -> dict:
    """Administrators only: put the case back on a user task of its definition it already passed.

    The tasks open now are cancelled, the chosen one opens again with the case's current
    deadlines; an explanation already issued cannot be taken back this way.
    """
    note = _reason(note)
    if not isinstance(to, str) or not to or len(to) > 64:
        raise ValidationFailed("thiếu bước đích", {"to": "Mã phần tử BPMN của công việc (element id)."})
    with db.transaction() as session:
        request = _common.request_for_update(session, code)
        if not actor.has_role("admin", request.unit_code):
            raise Forbidden("chỉ quản trị hệ thống được chuyển bước (administrators only)")
        if request.closed or request.explained_at is not None:
            raise Conflict("yêu cầu đã giải trình hoặc đã kết thúc (request explained or closed)")
        if request.suspended_at is not None:
            raise Conflict("yêu cầu đang tạm đình chỉ (request suspended)")
        definition = _common.definition(session, request.definition_id)
        meta = definition.manifest["tasks"].get(to)
        if meta is None or to.startswith("escalate"):
            raise ValidationFailed("bước đích không hợp lệ", {
                "to": f"{to} không phải công việc của quy trình {definition.key} v{definition.version} (not a user task)."})
        running, state = _common.load_running(session, request)
        before = sorted(t.step for t in session.execute(
            select(Task).where(Task.request_id == request.id, Task.status == "open")).scalars())
        try:
            reopened = runtime.move_token(running, to, keep=_KEPT_ON_MOVE)
        except LookupError:
            raise ValidationFailed("chỉ chuyển về được bước hồ sơ đã đi qua", {
                "to": f"Hồ sơ chưa từng qua bước {to} (only a step this case already passed)."}) from None
        # SpiffWorkflow reopens the completed task under its own id: the row of that completion
        # stays as history under a new id, and the reopened task gets a fresh row.
        done = session.get(Task, reopened)
        if done is not None:
            for candidate in session.execute(select(TaskCandidate).where(TaskCandidate.task_id == reopened)).scalars():
                session.delete(candidate)
            _common.flush(session)
            done.id = str(uuid4())
            _common.flush(session)
        opened = _common.save_running(session, request, running, state, actor=actor.username)
        escalating = session.execute(select(Task.id).where(Task.request_id == request.id, Task.status == "open",
                                                           Task.step.startswith("escalate"))).first()
        if escalating is None:  # the reset dropped the head's escalation task with the branch it was on
            for escalation in session.execute(select(Escalation).where(Escalation.request_id == request.id,
                                                                       Escalation.resolved_at.is_(None))).scalars():
                escalation.resolved_at = clock.now()
                escalation.resolved_by = actor.username
                escalation.note = f"Chuyển hồ sơ về bước {to}"
        audit.record(session, "token_moved", actor=actor.username, request_id=request.id, step=to, public=False,
                     note=note, before={"open_steps": before, "status": request.status},
                     after={"step": to, "tasks": [t.id for t in opened]})
        from .requests import public_summary
        result = public_summary(session, request)
    from .. import timers
    timers.wake()
    return result


def move_targets(code: str, actor: Actor) -> list[str]:
    """User tasks an administrator may move this case back to."""
    with db.read_only() as session:
        request = _viewable(session, code, actor)
        if not actor.has_role("admin", request.unit_code) or request.closed or request.explained_at is not None:
            return []
        state = session.get(WorkflowState, request.id)
        running = runtime.load(_common.definition(session, request.definition_id), state.state,
                               cal.load_calendar(session))
        return [t for t in runtime.passed_user_tasks(running) if not t.startswith("escalate")]


# -- bulk: one transaction per case, a failure never undoes the others -------------------------

BULK_ACTIONS = ("reassign", "urge", "retry")
BULK_MAX = 200


def bulk(actor: Actor, action, codes, note, assignee=None) -> dict:
    """Run one action on many cases, each on its own; the answer says how each one went."""
    _require_supervisor(actor)
    if not isinstance(action, str) or action not in BULK_ACTIONS:
        raise ValidationFailed("thao tác không hợp lệ", {"action": "Một trong: " + ", ".join(BULK_ACTIONS)})
    if not isinstance(codes, list) or not codes or len(codes) > BULK_MAX \
            or not all(isinstance(c, str) and 0 < len(c) <= 32 for c in codes):
        raise ValidationFailed("danh sách hồ sơ không hợp lệ", {"codes": f"1 đến {BULK_MAX} mã hồ sơ (codes)."})
    note = _reason(note)
    if action == "reassign":
        with db.read_only() as session:
            _person(session, assignee, "assignee")
    results = []
    for code in dict.fromkeys(codes):  # each code once, in the order given
        try:
            if action == "reassign":
                reassign(code, actor, assignee, note)
            elif action == "urge":
                urge(code, actor, note)
            else:
                retry_incidents(code, actor, note)
            results.append({"code": code, "ok": True})
        except ServiceError as exc:
            detail = "; ".join(exc.fields.values()) if exc.fields else exc.message
            results.append({"code": code, "ok": False, "error": detail, "status": exc.status})
    done = sum(1 for r in results if r["ok"])
    return {"action": action, "results": results, "succeeded": done, "failed": len(results) - done}


# -- one case: its diagram and its full trail ---------------------------------------------------


def _viewable(session, code: str, actor: Actor) -> Request:
    request = session.execute(select(Request).where(Request.code == code)).scalar_one_or_none()
    if request is None:
        raise NotFound(f"không có yêu cầu {code} (unknown request)")
    if not actor.handles_cases_of(request.unit_code):
        raise Forbidden("yêu cầu thuộc đơn vị khác (another unit's request)")
    return request


def diagram(code: str, actor: Actor) -> dict:
    """The case's BPMN with the element ids it completed, waits on, is late on, or failed on."""
    with db.read_only() as session:
        request = _viewable(session, code, actor)
        definition = _common.definition(session, request.definition_id)
        state = session.get(WorkflowState, request.id)
        running = runtime.load(definition, state.state, cal.load_calendar(session))
        elements = runtime.element_states(running)
        now = clock.now()
        open_tasks = session.execute(select(Task).where(Task.request_id == request.id, Task.status == "open")).scalars().all()
        failed = session.execute(select(Job).where(Job.request_id == request.id, Job.status == "incident")).scalars().all()
        incident_ids = []
        for job in failed:
            for element in (runtime.element_of(running, job.spiff_task_id), job.step):
                if element and element not in incident_ids:
                    incident_ids.append(element)
        overdue = sorted({t.step for t in open_tasks if t.due_at is not None and t.due_at < now})
        active = [e for e in elements["active"]]
        return {"code": request.code, "definition": {"id": definition.id, "key": definition.key,
                                                     "version": definition.version},
                "xml": definition.bpmn_xml, "completed": [e for e in elements["completed"] if e not in active],
                "active": active, "current_tasks": sorted({t.step for t in open_tasks}),
                "overdue": overdue, "incidents": incident_ids}


def _diff(before: dict | None, after: dict | None) -> list[dict]:
    before, after = before or {}, after or {}
    out = []
    for key in list(dict.fromkeys([*before, *after])):
        if before.get(key) != after.get(key):
            out.append({"field": key, "before": before.get(key), "after": after.get(key)})
    return out


def trail(code: str, actor: Actor) -> list[dict]:
    """Every audit event of the case (internal ones too) with who, when, and what changed."""
    with db.read_only() as session:
        request = _viewable(session, code, actor)
        if not any(actor.has_role(r, request.unit_code) for r in SUPERVISORS):
            raise Forbidden("chỉ lãnh đạo, thanh tra mới xem toàn bộ nhật ký (supervisors only)")
        events = session.execute(select(AuditEvent).where(AuditEvent.request_id == request.id)
                                 .order_by(AuditEvent.id)).scalars()
        return [{"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "step": e.step,
                 "note": e.note, "public": bool(e.public), "changes": _diff(e.before, e.after)} for e in events]


# -- the heatmap: per BPMN element, open tasks, overdue tasks, incidents --------------------------


def heatmap(actor: Actor, key: str | None = None, definition_id: int | None = None, unit: str | None = None) -> dict:
    """Counts per element id over every version of a process (or one version), for the diagram."""
    from ..models import Definition
    units = _require_supervisor(actor)
    now = clock.now()
    with db.read_only() as session:
        if definition_id is not None:
            chosen = session.get(Definition, definition_id)
            if chosen is None:
                raise NotFound("không có quy trình này (unknown definition)")
            versions = [chosen.id]
        else:
            chosen = _common.deployed_definition(session, key or _common.DEFAULT_PROCESS)
            versions = list(session.execute(select(Definition.id).where(Definition.key == chosen.key)).scalars())
        scope = _unit_filter(Request.unit_code, units, unit)
        nodes: dict[str, dict] = {}
        tasks = session.execute(
            select(Task.step, func.count(), func.sum(case((Task.due_at < now, 1), else_=0)))
            .join(Request, Request.id == Task.request_id)
            .where(Task.status == "open", Request.definition_id.in_(versions), *scope)
            .group_by(Task.step)).all()
        for step, count, late in tasks:
            nodes.setdefault(step, {"open": 0, "overdue": 0, "incidents": 0}).update(open=count, overdue=int(late or 0))
        failed = session.execute(
            select(Job.step, func.count()).join(Request, Request.id == Job.request_id)
            .where(Job.status == "incident", Request.definition_id.in_(versions), *scope)
            .group_by(Job.step)).all()
        for step, count in failed:
            nodes.setdefault(step or "?", {"open": 0, "overdue": 0, "incidents": 0})["incidents"] = count
        content = _common.definition(session, chosen.id)
        siblings = session.execute(select(Definition.id, Definition.version, Definition.status)
                                   .where(Definition.key == chosen.key).order_by(Definition.version.desc())).all()
        return {"definition": {"id": chosen.id, "key": chosen.key, "version": chosen.version,
                               "all_versions": definition_id is None},
                "versions": [{"id": i, "version": v, "status": st} for i, v, st in siblings],
                "unit": unit, "xml": content.bpmn_xml, "nodes": nodes}


# -- the dashboard: per unit and rolled up to the parent unit ------------------------------------

_LATE_EXPLAIN_STEPS = ("assign", "explain", "dialogue", "approve")
DUE_SOON_WORKING_DAYS = 3


def _month_bounds(now: datetime) -> tuple[datetime, datetime, str]:
    today = cal.local_date(now)
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return (datetime.combine(first, time(0, 0), tzinfo=cal.LOCAL_TZ),
            datetime.combine(following, time(0, 0), tzinfo=cal.LOCAL_TZ), first.strftime("%Y-%m"))


def _local_day(column):
    """The local (Hà Nội) calendar date of a UTC timestamp column, computed by the database."""
    if db.is_sqlite():
        # Việt Nam has kept UTC+7 without daylight saving since 1975.
        return func.date(column, "+7 hours")
    return func.date(func.timezone("Asia/Ho_Chi_Minh", func.timezone("UTC", column)))


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def dashboard(actor: Actor, unit: str | None = None, meanwhile: Callable[[], Any] | None = None):
    """The figures of each unit the actor supervises, and each parent's figures with its units below.

    Counts come from grouped SQL over typed columns; working-day averages are computed over
    the month's (received, acknowledged, explained) instants with the working calendar.
    ``meanwhile``: another reader's work, done in this thread while a second connection still
    counts; then (figures, what it returned) is returned.
    """
    units = _require_supervisor(actor)
    now = clock.now()
    with db.read_only() as session:
        calendar = cal.load_calendar(session)
        start, end, month = _month_bounds(now)
        soon = cal.end_of_day(calendar.add_working_days(cal.local_date(now), DUE_SOON_WORKING_DAYS))
        scope = _unit_filter(Request.unit_code, units, unit)
        all_units = {u.code: u for u in session.execute(select(Unit.code, Unit.name, Unit.parent_code))}
        own: dict[str, dict] = {}

        def figures(code: str) -> dict:
            return own.setdefault(code, {"open": 0, "overdue": 0, "escalated": 0, "stuck": 0, "due_soon": 0,
                                         "explained": 0, "explained_on_time": 0, "ack_days_sum": 0, "ack_n": 0,
                                         "explain_days_sum": 0, "explain_n": 0, "rating_sum": 0, "rating_n": 0})

        late = exists().where(Escalation.request_id == Request.id, Escalation.step.in_(_LATE_EXPLAIN_STEPS))
        cutoff = inactive_cutoff(calendar, now, inactive_days(session))
        acknowledged_day = _local_day(Request.acknowledged_at)
        explained_day = _local_day(Request.explained_at)

        def open_rows_with_stuck(reader) -> list:
            # PostgreSQL: one pass over ix_requests_open_board (migration 0012) counts the open cases,
            # the overdue, due soon, escalated and stuck ones. Filtered counts, not sums of CASE: a
            # fifth less work per row. Its condition, closed = false, written as an equality so the
            # planner may use the index.
            return reader.execute(select(
                Request.unit_code, func.count(), func.count().filter(Request.overdue.is_(True)),
                func.count().filter(and_(Request.overdue.is_(False), Request.deadline_at >= now,
                                         Request.deadline_at <= soon)),
                func.count().filter(Request.escalated.is_(True)), func.count().filter(_stuck_condition(now, cutoff)))
                .where(Request.closed == False, *scope).group_by(Request.unit_code)).all()  # noqa: E712

        def kept_rows(reader) -> list:
            # SQLite: the open, overdue and escalated cases as the triggers keep them (models.BOARD_TABLE),
            # and the due-soon ones (they depend on the instant) from ix_requests_open_unit, a range of
            # it for each unit with open cases: a city's page 17 -> 3 ms.
            kept = reader.execute(
                select(board.c.unit_code, board.c.open_cases, board.c.overdue_cases, board.c.escalated_cases)
                .where(board.c.open_cases > 0, *_unit_filter(board.c.unit_code, units, unit))).all()
            codes = [row[0] for row in kept]
            due_soon = dict(reader.execute(
                select(Request.unit_code, func.count())
                .where(Request.closed.is_(False), Request.unit_code.in_(codes), Request.overdue.is_(False),
                       Request.deadline_at >= now, Request.deadline_at <= soon)
                .group_by(Request.unit_code)).all()) if codes else {}
            return [(code, open_n, overdue_n, due_soon.get(code, 0), escalated_n)
                    for code, open_n, overdue_n, escalated_n in kept]

        def stuck_rows(reader) -> list:
            # The stuck cases per unit, as the instance list counts them, from ix_requests_attention alone.
            return reader.execute(select(Request.unit_code, func.count())
                                  .where(_stuck_condition(now, cutoff), *scope).group_by(Request.unit_code)).all()

        def month_rows(reader) -> tuple:
            explained = reader.execute(
                select(Request.unit_code, func.count(), func.sum(case((late, 0), else_=1)))
                .where(Request.explained_at >= start, Request.explained_at < end, *scope)
                .group_by(Request.unit_code)).all()
            # The working days each acknowledgement took, as recorded with it (the reports count the
            # same), summed per unit from ix_requests_acknowledged alone: grouping the month's cases by
            # their pairs of local dates instead took 7 ms on its 4th day and 50 on its last.
            acknowledged = reader.execute(
                select(Request.unit_code, func.coalesce(func.sum(Request.ack_working_days), 0),
                       func.count(Request.ack_working_days))
                .where(Request.acknowledged_at >= start, Request.acknowledged_at < end, *scope)
                .group_by(Request.unit_code)).all()
            explained_days = reader.execute(
                select(Request.unit_code, acknowledged_day, explained_day, func.count())
                .where(Request.explained_at >= start, Request.explained_at < end,
                       Request.acknowledged_at.is_not(None), *scope)
                .group_by(Request.unit_code, acknowledged_day, explained_day)).all()
            rated = reader.execute(
                select(Request.unit_code, func.sum(Request.rating_score), func.count())
                .where(Request.rated_at >= start, Request.rated_at < end, Request.rating_score.is_not(None), *scope)
                .group_by(Request.unit_code)).all()
            return explained, acknowledged, explained_days, rated

        def own_session(read):
            def call():
                with db.read_only() as reader:
                    return read(reader)
            return call

        def also():
            return meanwhile() if meanwhile is not None else None

        # Many units' open cases (a city's): the two halves of the work run at once, on a second
        # connection (db.concurrently). A unit's passes are short, and a second thread would cost
        # what it saves.
        many = unit is None and (ALL_UNITS in units or len(units) > 1)
        if not db.is_sqlite():
            if many:
                (opened, beside), monthly = db.concurrently(lambda: (open_rows_with_stuck(session), also()),
                                                            own_session(month_rows))
            else:
                opened, monthly, beside = open_rows_with_stuck(session), month_rows(session), also()
            stuck = [(row[0], row[5]) for row in opened]
            opened = [row[:5] for row in opened]
        else:
            # SQLite has no INCLUDE: the stuck cases are a pass of their own over ix_requests_attention,
            # beside the kept counts and the month's figures.
            def kept_and_month(reader) -> tuple:
                return kept_rows(reader), month_rows(reader), also()

            if many:
                (opened, monthly, beside), stuck = db.concurrently(lambda: kept_and_month(session),
                                                                   own_session(stuck_rows))
            else:
                (opened, monthly, beside), stuck = kept_and_month(session), stuck_rows(session)
        explained, acknowledged, explained_days, rated = monthly

        for code, open_n, overdue_n, soon_n, escalated_n in opened:
            figures(code).update(open=open_n, overdue=overdue_n, due_soon=soon_n, escalated=escalated_n)
        for code, n in stuck:
            figures(code)["stuck"] = n
        for code, n, on_time in explained:
            figures(code).update(explained=n, explained_on_time=int(on_time or 0))
        between: dict = {}  # the same pairs of dates recur from unit to unit

        def days_between(first, last) -> int:
            if (first, last) not in between:
                between[first, last] = max(0, calendar.working_days_between(_as_date(first), _as_date(last)))
            return between[first, last]

        for code, days, n in acknowledged:
            figures(code).update(ack_days_sum=int(days), ack_n=n)
        for code, acknowledged_on, explained_on, n in explained_days:
            f = figures(code)
            f["explain_days_sum"] += n * days_between(acknowledged_on, explained_on)
            f["explain_n"] += n
        for code, total, n in rated:
            figures(code).update(rating_sum=int(total or 0), rating_n=n)

        visible = sorted(code for code in all_units
                         if (ALL_UNITS in units or code in units) and (unit is None or code == unit))
        children: dict[str, list[str]] = {}
        for code, u in all_units.items():
            if u.parent_code:
                children.setdefault(u.parent_code, []).append(code)

        def subtree(code: str, seen=None) -> list[str]:
            seen = seen if seen is not None else set()
            if code in seen:
                return []
            seen.add(code)
            out = [code]
            for child in sorted(children.get(code, [])):
                out += subtree(child, seen)
            return out

        def finish(raw: dict) -> dict:
            return {
                "open": raw["open"], "overdue": raw["overdue"], "escalated": raw["escalated"], "stuck": raw["stuck"],
                "due_soon": raw["due_soon"], "explained": raw["explained"],
                "explained_on_time": raw["explained_on_time"],
                "on_time_rate": round(raw["explained_on_time"] / raw["explained"], 3) if raw["explained"] else None,
                "avg_working_days_to_acknowledge": round(raw["ack_days_sum"] / raw["ack_n"], 1) if raw["ack_n"] else None,
                "avg_working_days_to_explain": round(raw["explain_days_sum"] / raw["explain_n"], 1) if raw["explain_n"] else None,
                "satisfaction_avg": round(raw["rating_sum"] / raw["rating_n"], 2) if raw["rating_n"] else None,
                "ratings": raw["rating_n"],
            }

        rows = []
        for code in visible:
            below = [c for c in subtree(code) if c in visible or ALL_UNITS in units]
            summed: dict = {}
            for member in below:
                for k, v in own.get(member, figures(member)).items():
                    summed[k] = summed.get(k, 0) + v
            parent = all_units[code].parent_code
            rows.append({"unit": code, "name": all_units[code].name, "parent": parent,
                         "depth": 0 if parent is None or parent not in visible else 1,
                         "children": sorted(c for c in children.get(code, []) if c in visible),
                         "own": finish(own.get(code, figures(code))), "rolled_up": finish(summed)})
        # The whole scope's live counts, each case once (a unit's own figures do not overlap).
        totals = {k: sum(own.get(code, {}).get(k, 0) for code in visible)
                  for k in ("open", "overdue", "escalated", "stuck", "due_soon")}
        result = {"month": month, "now": iso(now), "due_soon_working_days": DUE_SOON_WORKING_DAYS, "units": rows,
                  "totals": totals}
        return result if meanwhile is None else (result, beside)


# -- what the case page offers -------------------------------------------------------------------


def case_console(code: str, actor: Actor) -> dict:
    """For the case page: its open tasks with whom each may go to, its stuck reasons, what one may do."""
    from ..models import Membership, User
    with db.read_only() as session:
        request = _viewable(session, code, actor)
        may_act = any(actor.has_role(r, request.unit_code) for r in ("head", "supervisor"))
        ancestors = unit_tree.ancestors(session, request.unit_code)
        people = session.execute(
            select(User.username, User.full_name, Membership.role).join(Membership, Membership.user_id == User.id)
            .where(User.is_active.is_(True), or_(Membership.unit_code.in_(ancestors), Membership.unit_code.is_(None)))
            .order_by(User.full_name)).all()
        open_tasks = []
        for task in session.execute(select(Task).where(Task.request_id == request.id, Task.status == "open")
                                    .order_by(Task.created_at, Task.id)).scalars():
            holders = {}
            for username, full_name, role in people:
                if role == task.candidate_role:
                    holders[username] = full_name
            open_tasks.append({"id": task.id, "step": task.step, "title": task.title, "assignee": task.assignee,
                               "candidate_role": task.candidate_role, "due_at": iso(task.due_at),
                               "overdue": bool(task.due_at and task.due_at < clock.now()),
                               "candidates": [c.username for c in task.extra_candidates],
                               "assignable": sorted(holders.items(), key=lambda p: p[1])})
        everyone = sorted({(u, n) for u, n, _ in people}, key=lambda p: p[1])
        return {"may_act": may_act and not request.closed, "is_admin": actor.has_role("admin", request.unit_code),
                "open_tasks": open_tasks, "people": everyone}


def assignable_officials(actor: Actor) -> list[tuple[str, str]]:
    """Officials of the units the actor supervises (the bulk reassignment's choices)."""
    from ..models import Membership, User
    units = _require_supervisor(actor)
    with db.read_only() as session:
        query = (select(User.username, User.full_name).join(Membership, Membership.user_id == User.id)
                 .where(User.is_active.is_(True), Membership.role == "official"))
        if ALL_UNITS not in units:
            query = query.where(Membership.unit_code.in_(sorted(units)))
        return sorted(set(session.execute(query).all()), key=lambda p: p[1])
