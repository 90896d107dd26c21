"""Datetimes stored as UTC text on SQLite (engine/models.py's UtcDateTime)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from giaitrinh.engine.models import UtcDateTime

HANOI = timezone(timedelta(hours=7))


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 20, 9, 0, tzinfo=HANOI),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(2027, 1, 1, 6, 30, 0, 5, tzinfo=HANOI),
    datetime(999, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
    datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc),  # the clock's: no microseconds to write
    datetime(2026, 11, 20, 2, 0, 0, 1, tzinfo=timezone(timedelta(0), "UTC+0")),  # UTC, another tzinfo
])
def test_the_text_is_sqlalchemys_own_and_reads_back_as_the_same_instant(value):
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    text = ours.bind_processor(dialect)(value)
    assert text == theirs(value.astimezone(timezone.utc).replace(tzinfo=None))
    assert ours.result_processor(dialect, None)(text) == value


def test_a_naive_datetime_is_refused():
    dialect = sqlite.dialect()
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().dialect_impl(dialect).bind_processor(dialect)(datetime(2026, 11, 20, 9, 0))
    assert UtcDateTime().dialect_impl(dialect).bind_processor(dialect)(None) is None
