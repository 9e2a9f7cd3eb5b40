"""The first-response SLA clock: 4 working hours, 09:00-18:00 Beijing time, Mon-Fri.

Plain function, no database. 2026-01-05 is a Monday.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from repayments.services.support import add_working_hours, first_response_due
from tests.conftest import SHANGHAI


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
    assert first_response_due(opened) == due, why


def test_the_clock_works_in_beijing_time_whatever_zone_it_is_given() -> None:
    # 01:00 UTC is 09:00 in Beijing on Monday.
    opened = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert add_working_hours(opened, 4) == _sh(5, 13)


def test_long_durations_span_several_days() -> None:
    assert add_working_hours(_sh(5, 9), 9 * 5) == _sh(9, 18)  # a whole working week
    assert add_working_hours(_sh(5, 9), 9 * 5 + 1) == _sh(12, 10)
