"""Working time for service-level clocks: office hours on working days.

Mainland China moves working days around its public holidays (调休): a week-long
holiday is partly paid for by working a weekend day before or after it. So a day
is a working day when it is Monday to Friday and not a holiday, or when it is a
weekend day declared a working day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class WorkingCalendar:
    """Office hours and the days the office is open, in one time zone."""

    holidays: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()  # weekend days worked (调休)
    opens: time = time(9)
    closes: time = time(18)
    zone: ZoneInfo = SHANGHAI

    def is_working_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day.weekday() < 5 or day in self.extra_working_days

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``start`` plus ``hours`` of working time. Time outside office hours does not
        count, so a case opened on Friday evening is due on the next working morning."""
        cursor = start.astimezone(self.zone)
        remaining = timedelta(hours=hours)
        while True:
            cursor = self._next_working_moment(cursor)
            day_end = datetime.combine(cursor.date(), self.closes, tzinfo=self.zone)
            if remaining <= day_end - cursor:
                return cursor + remaining
            remaining -= day_end - cursor
            cursor = day_end

    def _next_working_moment(self, moment: datetime) -> datetime:
        day = moment.date()
        opens = datetime.combine(day, self.opens, tzinfo=self.zone)
        closes = datetime.combine(day, self.closes, tzinfo=self.zone)
        if self.is_working_day(day):
            if opens <= moment < closes:
                return moment
            if moment < opens:
                return opens
        following = day + timedelta(days=1)
        while not self.is_working_day(following):
            following += timedelta(days=1)
        return datetime.combine(following, self.opens, tzinfo=self.zone)
