"""The first-response SLA clock: 4 working hours, 09:00-18:00 Beijing time, Mon-Fri,
skipping public holidays and counting weekend days worked (调休) kept in admin.

2026-01-05 is a Monday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from repayments.domain.workdays import WorkingCalendar
from repayments.models import CalendarDay, CalendarDayKind, Dispute
from repayments.services.disputes import dispute_open
from repayments.services.support import first_response_due
from repayments.services.support_timeline import dispute_queue
from tests.conftest import SHANGHAI

WEEK = WorkingCalendar()


def add_working_hours(start: datetime, hours: float) -> datetime:
    return WEEK.add_working_hours(start, hours)


def _sh(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("opened", "due", "why"),
    [
        (_sh(5, 10), _sh(5, 14), "inside one working day"),
        (_sh(5, 15), _sh(6, 10), "runs over the evening into Tuesday morning"),
        (_sh(5, 7, 30), _sh(5, 13), "opened before 09:00 starts counting at 09:00"),
        (_sh(5, 18), _sh(6, 13), "opened at closing time counts from the next morning"),
        (_sh(5, 22), _sh(6, 13), "opened at night counts from the next morning"),
        (_sh(9, 16), _sh(12, 11), "Friday afternoon runs over the weekend to Monday"),
        (_sh(10, 11), _sh(12, 13), "opened on Saturday counts from Monday 09:00"),
        (_sh(11, 23, 59), _sh(12, 13), "Sunday night likewise"),
        (_sh(5, 14), _sh(5, 18), "may end exactly at closing time"),
    ],
)
def test_first_response_is_due_after_four_working_hours(
    opened: datetime, due: datetime, why: str
) -> None:
    assert first_response_due(opened, WEEK) == due, why


def test_the_clock_works_in_beijing_time_whatever_zone_it_is_given() -> None:
    # 01:00 UTC is 09:00 in Beijing on Monday.
    opened = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert add_working_hours(opened, 4) == _sh(5, 13)


def test_long_durations_span_several_days() -> None:
    assert add_working_hours(_sh(5, 9), 9 * 5) == _sh(9, 18)  # a whole working week
    assert add_working_hours(_sh(5, 9), 9 * 5 + 1) == _sh(12, 10)


def test_a_public_holiday_does_not_count() -> None:
    # Monday 12 January off: Friday afternoon's case runs on to Tuesday.
    calendar = WorkingCalendar(holidays=frozenset({date(2026, 1, 12)}))
    assert first_response_due(_sh(9, 16), calendar) == _sh(13, 11)
    assert first_response_due(_sh(12, 10), calendar) == _sh(13, 13)  # opened on the holiday


def test_a_weekend_day_worked_counts_and_a_week_long_holiday_is_skipped() -> None:
    # A holiday Monday to Wednesday, paid for by working the Saturday before it.
    calendar = WorkingCalendar(
        holidays=frozenset({date(2026, 1, 12), date(2026, 1, 13), date(2026, 1, 14)}),
        extra_working_days=frozenset({date(2026, 1, 10)}),
    )
    assert first_response_due(_sh(9, 16), calendar) == _sh(10, 11)  # Saturday worked
    assert first_response_due(_sh(10, 16), calendar) == _sh(15, 11)  # Thursday after
    assert first_response_due(_sh(11, 10), calendar) == _sh(15, 13)  # Sunday: not worked


@pytest.mark.django_db
def test_the_queue_reads_holidays_and_working_days_kept_in_admin(make_loan) -> None:
    loan = make_loan()
    friday_afternoon = _sh(9, 16)
    dispute_open(
        borrower=loan.borrower,
        loan=loan,
        payment=None,
        category="other",
        description="I paid but it does not show",
        now=friday_afternoon,
    )
    Dispute.objects.update(created_at=friday_afternoon)
    assert [r.due_at for r in dispute_queue(now=_sh(9, 17))] == [_sh(12, 11)]

    CalendarDay.objects.create(day=date(2026, 1, 12), kind=CalendarDayKind.HOLIDAY, name="x")
    assert [r.due_at for r in dispute_queue(now=_sh(9, 17))] == [_sh(13, 11)]
    CalendarDay.objects.create(day=date(2026, 1, 10), kind=CalendarDayKind.WORKING_DAY)
    assert [r.due_at for r in dispute_queue(now=_sh(9, 17))] == [_sh(10, 11)]
