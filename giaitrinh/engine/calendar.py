"""The Vietnamese working-day calendar and statutory deadline arithmetic.

Civil Code 2015 art. 147-148: the day of the event is not counted; a period in
days ends at 24:00 of its last day, and if that day is a weekend or a public
holiday the period ends at 24:00 of the next working day.

Public holidays (lunar ones included), substituted days off and the make-up
working Saturdays come from the ``holidays`` package; administrators add what the
government decides later (an extra day off, a moved holiday, a make-up Saturday)
in the ``calendar_days`` table, which wins over the package.
"""
from __future__ import annotations

import threading
from time import monotonic as _monotonic
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

import holidays

from . import plainsql

LOCAL_TZ = timezone(timedelta(hours=7), "ICT")  # Asia/Ho_Chi_Minh has had no DST since 1975
END_OF_DAY = time(23, 59, 59)
_MAX_DAYS = 3660  # ten years: no statutory period comes near it; stops runaway arithmetic
_COUNTED_AT_MOST = 4096  # answers a calendar keeps (WorkingCalendar._counted)


@lru_cache(maxsize=64)
def _national(year: int) -> tuple[dict[date, str], frozenset[date]]:
    vn = holidays.VN(years=year, language="vi")
    names = {day: name for day, name in vn.items()}
    make_up = frozenset(getattr(vn, "weekend_workdays", ()) or ())
    return names, make_up


def warm_up(today: date) -> None:
    """Compute the national holidays of this year and the next before a process serves: the
    first computation imports the holidays package's registry of countries (about 100 ms), which
    the first page or deadline after a restart would otherwise pay for, in every worker."""
    for year in (today.year, today.year + 1):
        _national(year)


@dataclass
class WorkingCalendar:
    """Working days = Monday to Friday, minus holidays and days off, plus make-up Saturdays."""

    days_off: dict[date, str] = field(default_factory=dict)  # local overrides: extra days off
    working_days: dict[date, str] = field(default_factory=dict)  # local overrides: make-up days
    # Answers already counted, day by day: every inbox line and every step counts the working days
    # between today and a deadline, and a server asks the same few pairs all day. A calendar's days
    # are not changed once it is built (load_calendar builds a new one when the overrides change).
    _counted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def holiday_name(self, day: date) -> str | None:
        if day in self.working_days:
            return None
        if day in self.days_off:
            return self.days_off[day] or "Ngày nghỉ"
        names, _ = _national(day.year)
        return names.get(day)

    def is_working_day(self, day: date) -> bool:
        if day in self.working_days:
            return True
        if day in self.days_off:
            return False
        names, make_up = _national(day.year)
        if day in make_up:
            return True
        if day.weekday() >= 5:
            return False
        return day not in names

    def roll_forward(self, day: date) -> date:
        """The day itself if it is a working day, else the next working day."""
        for _ in range(_MAX_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError("no working day within ten years")

    def _counted_once(self, key: tuple, count):
        found = self._counted.get(key)
        if found is None:
            if len(self._counted) >= _COUNTED_AT_MOST:
                self._counted.clear()
            found = self._counted[key] = count()
        return found

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after ``start`` (``start`` itself is never counted)."""
        if not 0 <= n <= _MAX_DAYS:
            raise ValueError(f"period out of range: {n}")
        return self._counted_once(("add", start, n), lambda: self._add_working_days(start, n))

    def _add_working_days(self, start: date, n: int) -> date:
        day = start
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return day

    def add_days(self, start: date, n: int) -> date:
        """Last day of a period of n days after ``start``, moved to the next working day if needed."""
        if not 0 <= n <= _MAX_DAYS:
            raise ValueError(f"period out of range: {n}")
        return self.roll_forward(start + timedelta(days=n))

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (negative when end is before)."""
        if end == start:
            return 0
        return self._counted_once(("between", start, end), lambda: self._working_days_between(start, end))

    def _working_days_between(self, start: date, end: date) -> int:
        sign = 1
        if end < start:
            start, end, sign = end, start, -1
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return sign * count

    def days_in(self, first: date, last: date) -> list[tuple[date, bool, str | None]]:
        """Each day of a range with whether it is worked and why not (for the calendar page)."""
        out = []
        day = first
        while day <= last:
            out.append((day, self.is_working_day(day), self.holiday_name(day)))
            day += timedelta(days=1)
        return out


def local_date(moment: datetime) -> date:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(LOCAL_TZ).date()


def end_of_day(day: date) -> datetime:
    """24:00 of a day, written as 23:59:59+07:00 (API.md)."""
    return datetime.combine(day, END_OF_DAY, tzinfo=LOCAL_TZ)


def working_days_left(now: datetime, due: datetime, calendar: WorkingCalendar) -> int:
    """Working days from today to the due day: 0 means due today, negative means late."""
    today = local_date(now)
    due_day = local_date(due)
    if due < now and due_day == today:
        return -1 if calendar.is_working_day(today) else 0
    return calendar.working_days_between(today, due_day)


# -- the calendar as configured in the database -----------------------------------

# Other processes on the same database see an administrator's change within a minute.
_CACHE_SECONDS = 60.0
_cache: dict[str, tuple[float, WorkingCalendar]] = {}
_cache_lock = threading.Lock()


def invalidate_cache() -> None:
    with _cache_lock:
        _cache.clear()


def load_calendar(session) -> WorkingCalendar:
    """The calendar with the administrators' overrides, cached until they change. ``session`` may
    also be a Core connection or ``db.reading``'s (the inbox reads without a session)."""
    from . import db

    # Asked 22 times a lifecycle: the cached calendar is found before anything else is imported.
    bind = session.get_bind() if hasattr(session, "get_bind") else session.engine
    key = db.database_key(bind)
    cached = _cache.get(key)
    if cached is not None and _monotonic() - cached[0] < _CACHE_SECONDS:
        return cached[1]
    from sqlalchemy import select

    from .models import CalendarDay

    days_off: dict[date, str] = {}
    working: dict[date, str] = {}
    columns = select(CalendarDay.day, CalendarDay.kind, CalendarDay.note)
    # db.reading's SQLite connection has no execute(): its statements go through plainsql.
    rows = session.execute(columns) if hasattr(session, "execute") else plainsql.rows(session, columns, {})
    for day, kind, note in rows:
        (days_off if kind == "day_off" else working)[day] = note or ""
    calendar = WorkingCalendar(days_off=days_off, working_days=working)
    with _cache_lock:
        _cache[key] = (_monotonic(), calendar)
    return calendar
