"""Borrower preferences that decide when and how a notice may reach them."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, time, timedelta

from django.utils import timezone

from notifications.models import DeliveryChannel, NotificationPreference

DEFAULT_QUIET = (22, 8)  # 22:00-08:00 local time
DEFAULT_CHANNEL_ORDER = (DeliveryChannel.SMS, DeliveryChannel.PUSH)
EXTERNAL_CHANNELS = frozenset(DEFAULT_CHANNEL_ORDER)


def channel_orders(*, user_ids: Collection[int]) -> dict[int, list[str]]:
    """The external channels to try for each borrower, in their order (one query).

    The in-app inbox is not among them: every notice lands there anyway.
    """
    stored = dict(
        NotificationPreference.objects.filter(user_id__in=set(user_ids)).values_list(
            "user_id", "channel_order"
        )
    )
    default = [str(channel) for channel in DEFAULT_CHANNEL_ORDER]
    orders = {}
    for user_id in user_ids:
        order = [c for c in (stored.get(user_id) or []) if c in EXTERNAL_CHANNELS]
        orders[user_id] = order or default
    return orders


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
