"""Working-day arithmetic (Civil Code art. 147-148, Decree 59/2019 art. 11 and 13)."""
from datetime import date, datetime

import pytest

from giaitrinh.engine import calendar as cal

CAL = cal.WorkingCalendar()


def test_acknowledge_within_five_working_days_skips_weekend_and_culture_day():
    # Received Friday 20/11/2026: 23, 25, 26, 27, 30 (24/11 is Vietnam Culture Day).
    assert not CAL.is_working_day(date(2026, 11, 24))
    assert CAL.add_working_days(date(2026, 11, 20), 5) == date(2026, 11, 30)
    assert cal.end_of_day(date(2026, 11, 30)).isoformat() == "2026-11-30T23:59:59+07:00"


def test_fifteen_days_ending_on_saturday_roll_to_monday():
    assert date(2026, 11, 20) + (date(2026, 12, 5) - date(2026, 11, 20)) == date(2026, 12, 5)
    assert date(2026, 12, 5).weekday() == 5
    assert CAL.add_days(date(2026, 11, 20), 15) == date(2026, 12, 7)


def test_tet_2027_is_not_worked():
    for day in range(4, 11):
        assert not CAL.is_working_day(date(2027, 2, day)), day
    # Received on Wednesday 3/2/2027: the five working days start after Tết.
    assert CAL.add_working_days(date(2027, 2, 3), 5) == date(2027, 2, 17)
    # A day period ending inside Tết ends on the first working day after it.
    assert CAL.add_days(date(2027, 1, 25), 12) == date(2027, 2, 11)


def test_make_up_saturday_counts_as_a_working_day():
    # 22/08/2026 is the make-up Saturday for the day off on Monday 31/08/2026.
    assert CAL.is_working_day(date(2026, 8, 22))
    assert not CAL.is_working_day(date(2026, 8, 31))
    assert CAL.add_working_days(date(2026, 8, 21), 1) == date(2026, 8, 22)


def test_local_overrides_win_over_the_package():
    local = cal.WorkingCalendar(days_off={date(2026, 11, 23): "Nghỉ bù"}, working_days={date(2026, 11, 28): "Làm bù"})
    assert not local.is_working_day(date(2026, 11, 23))
    assert local.is_working_day(date(2026, 11, 28))
    assert local.holiday_name(date(2026, 11, 23)) == "Nghỉ bù"
    assert local.add_working_days(date(2026, 11, 20), 5) == date(2026, 11, 30)  # 25 26 27 28 30


def test_national_days_and_new_year():
    assert not CAL.is_working_day(date(2026, 9, 2))
    assert not CAL.is_working_day(date(2027, 1, 1))
    assert CAL.holiday_name(date(2026, 9, 2))


def test_working_days_left():
    now = datetime.fromisoformat("2026-11-20T09:00:00+07:00")
    due = cal.end_of_day(date(2026, 11, 30))
    assert cal.working_days_left(now, due, CAL) == 5
    assert cal.working_days_left(due, due, CAL) == 0
    later = datetime.fromisoformat("2026-12-01T09:00:00+07:00")
    assert cal.working_days_left(later, due, CAL) == -1


def test_periods_are_bounded():
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 1, 1), -1)
    with pytest.raises(ValueError):
        CAL.add_days(date(2026, 1, 1), 10**6)


def test_counted_answers_are_each_calendars_own_and_the_same_as_counting_again():
    from datetime import date as day

    from giaitrinh.engine import calendar as calendar_module

    plain = calendar_module.WorkingCalendar()
    moved = calendar_module.WorkingCalendar(days_off={day(2026, 12, 7): "Nghỉ bù"})
    start, end = day(2026, 12, 4), day(2026, 12, 11)  # Friday to Friday, no holiday between
    for _ in range(2):  # counted, then remembered
        assert plain.working_days_between(start, end) == 5
        assert moved.working_days_between(start, end) == 4
        assert plain.working_days_between(end, start) == -5
        assert plain.add_working_days(start, 1) == day(2026, 12, 7)
        assert moved.add_working_days(start, 1) == day(2026, 12, 8)
    assert plain == calendar_module.WorkingCalendar()  # what it remembers is not part of what it is
