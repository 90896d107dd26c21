"""Administrators keep the official days off and make-up working days the law adds each year."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select

from .. import audit, calendar as cal, clock, db
from ..accounts import Actor
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import CalendarDay

KINDS = ("day_off", "working_day")


def _parse_day(value) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed("ngày không hợp lệ", {"day": "Định dạng YYYY-MM-DD."}) from None


def month(year: int, month_: int) -> list[dict]:
    """Every day of a month with whether it is worked and why not."""
    first = date(year, month_, 1)
    last = date(year + (month_ == 12), month_ % 12 + 1, 1).toordinal() - 1
    with db.read_only() as session:
        calendar = cal.load_calendar(session)
        return [{"day": d.isoformat(), "working": w, "name": n}
                for d, w, n in calendar.days_in(first, date.fromordinal(last))]


def overrides() -> list[dict]:
    with db.read_only() as session:
        rows = session.execute(select(CalendarDay).order_by(CalendarDay.day)).scalars().all()
        return [{"day": r.day.isoformat(), "kind": r.kind, "note": r.note, "updated_by": r.updated_by} for r in rows]


def set_day(actor: Actor, day, kind: str, note: str = "") -> dict:
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị viên (administrators only)")
    parsed = _parse_day(day)
    if kind not in KINDS:
        raise ValidationFailed("loại ngày không hợp lệ", {"kind": "day_off hoặc working_day"})
    if not isinstance(note, str) or len(note) > 255:
        raise ValidationFailed("ghi chú không hợp lệ", {"note": "Tối đa 255 ký tự."})
    with db.transaction() as session:
        row = session.get(CalendarDay, parsed)
        before = {"kind": row.kind, "note": row.note} if row else None
        if row is None:
            row = CalendarDay(day=parsed, kind=kind, note=note, updated_by=actor.username, updated_at=clock.now())
            session.add(row)
        else:
            row.kind, row.note, row.updated_by, row.updated_at = kind, note, actor.username, clock.now()
        audit.record(session, "calendar_changed", actor=actor.username, public=False, before=before,
                     after={"day": parsed.isoformat(), "kind": kind, "note": note})
    cal.invalidate_cache()
    return {"day": parsed.isoformat(), "kind": kind, "note": note}


def remove_day(actor: Actor, day) -> None:
    if not actor.has_role("admin"):
        raise Forbidden("chỉ quản trị viên (administrators only)")
    parsed = _parse_day(day)
    with db.transaction() as session:
        row = session.get(CalendarDay, parsed)
        if row is None:
            raise NotFound("ngày này không có điều chỉnh (no override)")
        audit.record(session, "calendar_changed", actor=actor.username, public=False,
                     before={"day": parsed.isoformat(), "kind": row.kind, "note": row.note}, after=None)
        session.delete(row)
    cal.invalidate_cache()
