"""When status sync asks a channel about an open attempt.

Dense at first (most payments settle within a minute), then following the
channels' own notify windows: Alipay resends notifications for about 25 hours
and WeChat Pay for about 24, so after 25 hours nothing more will arrive by
itself and the attempt needs a person.
"""

from __future__ import annotations

from datetime import datetime, timedelta

QUERY_OFFSETS: tuple[timedelta, ...] = (
    timedelta(seconds=15),
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    *(timedelta(hours=h) for h in range(2, 26)),
)
NOTIFY_WINDOW = QUERY_OFFSETS[-1]
# Past the window the attempt is in the review queue, but still asked now and then:
# a channel that answers late must still be heard.
REVIEW_QUERY_INTERVAL = timedelta(hours=6)


def first_query_at(created_at: datetime) -> datetime:
    return created_at + QUERY_OFFSETS[0]


def next_query_at(created_at: datetime, now: datetime) -> datetime | None:
    """The next scheduled query strictly after ``now``; None once the window is over.

    Missed slots (a backlog, a stopped beat) are skipped rather than replayed in a burst.
    """
    for offset in QUERY_OFFSETS:
        if created_at + offset > now:
            return created_at + offset
    return None
