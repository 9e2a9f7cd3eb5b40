"""Borrower preferences that decide when and how a notice may reach them."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.utils import timezone

from notifications.models import NotificationPreference

DEFAULT_QUIET = (22, 8)  # 22:00-08:00 local time


def after_quiet_hours(*, user_id: int, at: datetime) -> datetime:
    """``at``, or the end of the borrower's quiet hours if ``at`` falls inside them.

    Only reminders wait: payment results are sent at any hour, because a
    borrower who just paid wants to know, whatever the time.
    """
    start, end = (
        NotificationPreference.objects.filter(user_id=user_id)
        .values_list("quiet_start_hour", "quiet_end_hour")
        .first()
    ) or DEFAULT_QUIET
    if start == end:
        return at  # no quiet hours
    local = timezone.localtime(at)
    hour = local.hour
    inside = (start <= hour or hour < end) if start > end else (start <= hour < end)
    if not inside:
        return at
    day = local.date() if hour < end else local.date() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(day, time(end)))
