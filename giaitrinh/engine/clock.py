"""The one clock the engine reads.

Deadlines are days long, so demos, training and tests move time instead of
waiting. Every place that needs "now" (services, timers, SpiffWorkflow's own timer
checks) calls :func:`now`, and the clock behind it is injected:

* :class:`SystemClock` in production;
* :class:`DevClock` when ``GIAITRINH_DEV_CLOCK=1``: real time plus an offset kept in
  the ``settings`` table, so every process on the same database shares it;
* :class:`FixedClock` in tests, moved by hand, never by sleeping.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from . import db
from .models import Setting

_OFFSET_KEY = "dev_clock_offset_seconds"


class ClockError(ValueError):
    pass


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ClockError("the clock needs an aware datetime")
        self._now = start.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ClockError("the clock needs an aware datetime")
        self._now = when.astimezone(timezone.utc)

    def advance(self, **delta) -> datetime:
        self._now += timedelta(**delta)
        return self._now


class DevClock:
    """Real time shifted by an offset shared through the database.

    The offset is re-read at most once a second, so a move made by one process is
    seen by the others almost at once without a query per call.
    """

    def __init__(self):
        self._offset = 0.0
        self._read_at = 0.0
        self._lock = threading.Lock()

    def _current_offset(self) -> float:
        with self._lock:
            if time.monotonic() - self._read_at > 1.0:
                with db.read_only() as session:
                    row = session.get(Setting, _OFFSET_KEY)
                    self._offset = float(row.value) if row else 0.0
                self._read_at = time.monotonic()
            return self._offset

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self._current_offset())

    def start_at(self, when: datetime | None) -> None:
        """Start the shared clock at ``when`` unless it already runs at or past it."""
        if when is None:
            return
        with db.transaction() as session:
            row = session.get(Setting, _OFFSET_KEY)
            current = datetime.now(timezone.utc) + timedelta(seconds=float(row.value) if row else 0.0)
            if row is None or when > current:
                self._write(session, row, when)
        self._read_at = 0.0

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ClockError("the clock needs an aware datetime")
        with db.transaction() as session:
            row = session.execute(
                select(Setting).where(Setting.key == _OFFSET_KEY).with_for_update()
            ).scalar_one_or_none()
            current = datetime.now(timezone.utc) + timedelta(seconds=float(row.value) if row else 0.0)
            if when < current - timedelta(seconds=1):
                raise ClockError(f"the clock cannot move back: it is already {current.isoformat()}")
            self._write(session, row, when)
        self._read_at = 0.0

    @staticmethod
    def _write(session, row, when: datetime) -> None:
        offset = (when - datetime.now(timezone.utc)).total_seconds()
        if row is None:
            session.add(Setting(key=_OFFSET_KEY, value=repr(offset)))
        else:
            row.value = repr(offset)


_clock = SystemClock()


def now() -> datetime:
    return _clock.now()


def wall_now() -> datetime:
    """Real time, whatever the engine's clock says: credentials expire by it, so moving the
    demo clock forward does not sign everybody out."""
    return datetime.now(timezone.utc)


def get_clock():
    return _clock


def set_clock(clock) -> None:
    global _clock
    _clock = clock


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset; naive values are refused, not guessed."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ClockError(f"not an ISO 8601 date-time: {text!r}") from exc
    if value.tzinfo is None:
        raise ClockError("the date-time needs an offset, e.g. +07:00")
    return value
