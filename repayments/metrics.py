"""Channel monitoring: Prometheus metrics served at ``/metrics`` beside django-prometheus.

Counters are per process (the web process counts callbacks; workers count
queries). Gauges that must agree across processes (quarantine size, janitor
backlog, oldest unresolved attempt) are read from the database at scrape time,
so any process's ``/metrics`` tells the truth. Alert conditions: docs/monitoring.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db.models import Count, Max, Min
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

callbacks_received = Counter(
    "anxin_callbacks_received_total", "Callbacks stored in the inbox", ["channel"]
)
callbacks_rejected = Counter(
    "anxin_callbacks_verification_failed_total",
    "Callbacks that failed signature or business verification",
    ["channel"],
)
callbacks_quarantined = Counter(
    "anxin_callbacks_quarantined_total",
    "Callbacks verified but not understood (changed field or format)",
    ["channel"],
)
channel_queries = Counter(
    "anxin_channel_queries_total", "Status queries sent to a channel", ["channel", "outcome"]
)
confirmation_lag = Histogram(
    "anxin_callback_lag_seconds",
    "Time from our order to the channel's confirmation",
    ["channel"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 21600, 90000),
)

# Orders created this recently with no callback at all is the seed-000 symptom.
SILENCE_WINDOW = timedelta(minutes=15)


def observe_confirmation(attempt: object, now: datetime) -> None:
    created_at = getattr(attempt, "created_at", None)
    channel = getattr(attempt, "channel", "")
    if created_at is not None:
        confirmation_lag.labels(channel).observe(max((now - created_at).total_seconds(), 0.0))


class StatusSyncCollector(Collector):
    """Database-backed gauges: true for the whole system, whichever process is scraped."""

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not query the database (apps may not be ready)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield from self._collect()
        except DatabaseError:
            logger.exception("status-sync gauges unavailable: database error")

    def _collect(self) -> Iterator[GaugeMetricFamily]:
        from repayments.domain.states import OPEN_ATTEMPT_STATUSES
        from repayments.models import (
            CallbackStatus,
            Discrepancy,
            DiscrepancyStatus,
            InboundCallbackRecord,
            PaymentAttempt,
        )

        now = timezone.now()
        quarantined = GaugeMetricFamily(
            "anxin_callbacks_quarantined",
            "Callbacks now in quarantine (alert when above zero)",
            labels=["channel"],
        )
        by_status = (
            InboundCallbackRecord.objects.filter(
                status__in=[CallbackStatus.QUARANTINED, CallbackStatus.RECEIVED]
            )
            .values_list("channel", "status")
            .annotate(n=Count("id"))
        )
        unprocessed = GaugeMetricFamily(
            "anxin_callbacks_unprocessed",
            "Callbacks stored but not yet processed",
            labels=["channel"],
        )
        for channel, status, n in by_status:
            target = quarantined if status == CallbackStatus.QUARANTINED else unprocessed
            target.add_metric([channel], n)
        yield quarantined
        yield unprocessed

        open_attempts = PaymentAttempt.objects.filter(status__in=OPEN_ATTEMPT_STATUSES)
        backlog = GaugeMetricFamily(
            "anxin_janitor_backlog",
            "Open attempts whose status query is due",
            labels=["channel"],
        )
        for channel, n in (
            open_attempts.filter(next_query_at__lte=now)
            .values_list("channel")
            .annotate(n=Count("id"))
        ):
            backlog.add_metric([channel], n)
        yield backlog
        oldest = GaugeMetricFamily(
            "anxin_oldest_open_attempt_seconds",
            "Age of the oldest attempt still waiting for its outcome",
            labels=["channel", "status"],
        )
        for channel, status, first in open_attempts.values_list("channel", "status").annotate(
            first=Min("created_at")
        ):
            oldest.add_metric([channel, status], (now - first).total_seconds())
        yield oldest
        review = GaugeMetricFamily(
            "anxin_attempts_needing_review", "Attempts past the notify window", labels=["channel"]
        )
        for channel, n in (
            open_attempts.filter(needs_review=True).values_list("channel").annotate(n=Count("id"))
        ):
            review.add_metric([channel], n)
        yield review

        recent_orders = GaugeMetricFamily(
            "anxin_orders_created_recently",
            "Attempts created in the last 15 minutes",
            labels=["channel"],
        )
        for channel, n in (
            PaymentAttempt.objects.filter(created_at__gte=now - SILENCE_WINDOW)
            .values_list("channel")
            .annotate(n=Count("id"))
        ):
            recent_orders.add_metric([channel], n)
        yield recent_orders
        last_callback = GaugeMetricFamily(
            "anxin_callback_last_received_timestamp_seconds",
            "When the last callback arrived (Unix time)",
            labels=["channel"],
        )
        for channel, last in InboundCallbackRecord.objects.values_list("channel").annotate(
            last=Max("received_at")
        ):
            last_callback.add_metric([channel], last.timestamp())
        yield last_callback

        discrepancies = GaugeMetricFamily(
            "anxin_reconciliation_open_discrepancies",
            "Statement differences waiting for support",
            labels=["channel", "kind"],
        )
        for channel, kind, n in (
            Discrepancy.objects.filter(status=DiscrepancyStatus.OPEN)
            .values_list("channel", "kind")
            .annotate(n=Count("id"))
        ):
            discrepancies.add_metric([channel, kind], n)
        yield discrepancies


_registered = False


def register_collector() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(StatusSyncCollector())
        _registered = True
