"""Notification metrics (per process; see docs/monitoring.md)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from notifications.models import Notice

notices_created = Counter("anxin_notices_created_total", "Notices written", ["kind"])
notices_delivered = Counter(
    "anxin_notices_delivered_total", "Notices delivered", ["kind", "channel"]
)
notices_superseded = Counter(
    "anxin_notices_superseded_total", "Notices not sent: no longer true", ["kind"]
)
notices_corrected = Counter(
    "anxin_notices_corrected_total", "Corrections sent after a contradicting notice", ["kind"]
)
notices_failed = Counter(
    "anxin_notices_failed_total", "Dispatch rounds where every channel failed", ["kind"]
)
state_to_delivery = Histogram(
    "anxin_notice_state_to_delivery_seconds",
    "From the state change to the notice's delivery",
    ["kind"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 180, 300, 600, 1800),
)


def observe_delivery(notice: Notice, channel: str) -> None:
    notices_delivered.labels(notice.kind, channel).inc()
    if notice.delivered_at is not None:
        seconds = (notice.delivered_at - notice.state_changed_at).total_seconds()
        state_to_delivery.labels(notice.kind).observe(max(seconds, 0.0))
