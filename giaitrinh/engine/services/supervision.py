"""Supervisors' use cases: escalations, the instance list, suspension and resumption (art. 14)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.orm import joinedload, load_only

from .. import audit, calendar as cal, clock, db, jobs, runtime
from ..accounts import ALL_UNITS, Actor
from ..errors import Conflict, Forbidden, NotFound, ValidationFailed
from ..models import Escalation, Job, Request, Task
from . import _common
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
        rows = session.execute(
            query.order_by(Escalation.resolved_at.is_not(None), Escalation.raised_at.desc(), Escalation.id.desc())
            .offset((page - 1) * per_page).limit(per_page)
            .options(joinedload(Escalation.request).load_only(Request.code, Request.subject, Request.assignee,
                                                              Request.status))
        ).scalars().all()
        items = [{
            "id": e.id, "request_code": e.request.code, "subject": e.request.subject, "unit": e.unit_code,
            "step": e.step, "level": e.level, "raised_at": iso(e.raised_at), "due_at": iso(e.due_at),
            "owner_role": e.owner_role, "resolved_at": iso(e.resolved_at), "resolved_by": e.resolved_by,
            "note": e.note, "assignee": e.request.assignee, "request_status": e.request.status,
        } for e in rows]
        return {"items": items, "total": total, "page": page, "per_page": per_page}


def _stuck_condition(now: datetime):
    """Open cases that cannot move on their own: a task past due, an incident, or nothing waiting."""
    task_late = exists().where(Task.request_id == Request.id, Task.status == "open", Task.due_at < now)
    incident = exists().where(Job.request_id == Request.id, Job.status == "incident")
    has_task = exists().where(Task.request_id == Request.id, Task.status == "open")
    has_job = exists().where(Job.request_id == Request.id, Job.status.in_(("waiting", "paused")))
    nothing = and_(not_(has_task), not_(has_job), Request.status != "needs_info")
    return and_(Request.closed.is_(False), Request.suspended_at.is_(None), or_(task_late, incident, nothing))


# The columns a list shows: not the content, requester, explanation or JSON of every row (a page
# of 200 full rows cost more to load than to find).
_LISTED = (Request.code, Request.subject, Request.unit_code, Request.status, Request.current_step, Request.assignee,
           Request.received_at, Request.deadline_at, Request.overdue, Request.extended, Request.suspended_at,
           Request.closed)


def list_instances(actor: Actor, status: str | None = None, overdue: bool | None = None, stuck: bool | None = None,
                   unit: str | None = None, closed: bool | None = None, q: str | None = None,
                   page: int = 1, per_page: int = 50) -> dict:
    units = _require_supervisor(actor)
    now = clock.now()
    with db.read_only() as session:
        query = select(Request).where(*_unit_filter(Request.unit_code, units, unit))
        if status:
            query = query.where(Request.status == status)
        if overdue is not None:
            query = query.where(Request.overdue.is_(overdue), Request.closed.is_(False))
        if closed is not None:
            query = query.where(Request.closed.is_(closed))
        if stuck:
            query = query.where(_stuck_condition(now))
        if q:
            query = query.where(or_(Request.code == q.strip(), Request.subject.ilike(f"%{q.strip()[:100]}%")))
        total = _common.count(session, query)
        rows = session.execute(
            query.order_by(Request.closed, Request.deadline_at.is_(None), Request.deadline_at, Request.id.desc())
            .offset((page - 1) * per_page).limit(per_page).options(load_only(*_LISTED))
        ).scalars().all()
        calendar = cal.load_calendar(session)
        items = []
        for r in rows:
            items.append({
                "code": r.code, "subject": r.subject, "unit": r.unit_code, "status": r.status,
                "current_step": r.current_step, "assignee": r.assignee, "received_at": iso(r.received_at),
                "deadline_at": iso(r.deadline_at), "overdue": bool(r.overdue), "extended": bool(r.extended),
                "suspended": r.suspended_at is not None, "closed": bool(r.closed),
                "working_days_left": cal.working_days_left(now, r.deadline_at, calendar) if r.deadline_at else None,
            })
        return {"items": items, "total": total, "page": page, "per_page": per_page}


def _may_suspend(actor: Actor, request: Request) -> None:
    if not (actor.has_role("head", request.unit_code) or actor.has_role("supervisor", request.unit_code)):
        raise Forbidden("chỉ thủ trưởng đơn vị hoặc thanh tra được tạm đình chỉ (head or supervisor only)")


def suspend(code: str, actor: Actor, ground: str, note: str | None = None) -> dict:
    """Art. 14: the case stops and its deadline clock pauses until it resumes."""
    if ground not in SUSPENSION_GROUNDS:
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
