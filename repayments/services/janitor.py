"""The pending-payment janitor: ask the channel about attempts nobody told us about.

Callbacks get lost; the janitor makes that harmless. Every open attempt carries
its next query time (see ``repayments.domain.query_schedule``). Workers claim
due attempts with ``FOR UPDATE SKIP LOCKED`` and push the time forward by a
lease in the same transaction, so several workers on several hosts share the
queue without asking twice, and a claim by a worker that died is simply due
again when its lease runs out. An ``unknown`` attempt is never called failed
unless the channel says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from django.core.cache import cache
from django.db import transaction

from repayments import metrics
from repayments.channels.base import (
    BatchDebitChannel,
    ChannelDeclined,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    TradeResult,
)
from repayments.domain.query_schedule import REVIEW_QUERY_INTERVAL, next_query_at
from repayments.domain.states import (
    OPEN_ATTEMPT_STATUSES,
    AttemptStatus,
    IllegalTransition,
)
from repayments.models import DebitBatch, EventKind, PaymentAttempt, PaymentEvent
from repayments.services.audit import audit_batch
from repayments.services.payments import attempts_lock, outcomes_applied_together
from repayments.services.routing import (
    CARD_METHODS,
    WALLET_ORDER_TTL,
    AmountMismatch,
    ChannelFactory,
    FallbackNotSafe,
    attempt_channel_query,
    attempt_settle_or_close,
    channel_result_apply,
    channel_result_apply_locked,
    default_channel,
)
from repayments.services.timeline import timeline_record

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=2)
# Answers applied per transaction by janitor_check_many: each locks a payment until
# the commit, so a callback for one of them waits at most this many applications.
APPLY_CHUNK = 200
# A borrower refreshing the record page asks the channel at most this often.
IMMEDIATE_QUERY_INTERVAL_SECONDS = 10


def janitor_claim(*, now: datetime, limit: int = 200) -> list[int]:
    """Claim up to ``limit`` attempts whose query is due; each is leased to the caller."""
    with transaction.atomic():
        ids = list(
            PaymentAttempt.objects.select_for_update(skip_locked=True)
            .filter(next_query_at__lte=now, status__in=OPEN_ATTEMPT_STATUSES)
            .order_by("next_query_at")
            .values_list("pk", flat=True)[:limit]
        )
        PaymentAttempt.objects.filter(pk__in=ids).update(next_query_at=now + CLAIM_LEASE)
    return ids


def janitor_check(
    *, attempt_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> str:
    """Query one attempt, record what the channel says, and schedule the next query.

    A wallet order still unpaid after its expiry is closed at the channel, which
    frees the loan for another try. Returns the attempt's status afterwards.
    """
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status not in OPEN_ATTEMPT_STATUSES:
        return attempt.status
    try:
        attempt = _ask(attempt, now=now, channels=channels)
        metrics.channel_queries.labels(attempt.channel, "ok").inc()
    except (ChannelUnavailable, ChannelOutcomeUnknown, ChannelDeclined, FallbackNotSafe) as exc:
        metrics.channel_queries.labels(attempt.channel, "error").inc()
        logger.info("status query for %s failed: %s", attempt.out_trade_no, exc)
    except AmountMismatch as exc:
        logger.error("attempt %s held for review: %s", attempt.out_trade_no, exc)
        _hold_for_review(attempt, now=now, reason=str(exc))
        return attempt.status
    if attempt.status in OPEN_ATTEMPT_STATUSES:
        _schedule_next(attempt, now=now)
    if attempt.status == AttemptStatus.SUCCEEDED:
        metrics.observe_confirmation(attempt, now)
    return attempt.status


def janitor_check_many(
    *, attempt_ids: Sequence[int], now: datetime, channels: ChannelFactory = default_channel
) -> dict[int, str]:
    """:func:`janitor_check` for several claimed attempts, with one commit for all.

    Each attempt is still asked on its own, outside any transaction; the answers
    that change something are then applied together, in one transaction and one
    audit-chain write, instead of one of each per attempt. An answer the batch
    cannot apply as is (another amount, a transition the state machine refuses,
    an expired wallet order to close) goes through :func:`janitor_check` alone,
    after the batch commits. Returns each attempt's status afterwards.
    """
    statuses: dict[int, str] = {}
    answered: list[tuple[PaymentAttempt, TradeResult]] = []
    unchanged: list[PaymentAttempt] = []
    alone: list[int] = []
    asked: list[PaymentAttempt] = []
    attempts = (
        PaymentAttempt.objects.filter(pk__in=attempt_ids)
        .select_related("debit_batch")
        .order_by("payment_id", "pk")
    )
    for attempt in attempts:
        if attempt.status not in OPEN_ATTEMPT_STATUSES:
            statuses[attempt.pk] = attempt.status
        elif _expired_wallet_order(attempt, now):
            alone.append(attempt.pk)
        else:
            asked.append(attempt)
    results = _query_all(asked, channels)
    for attempt in asked:
        result = results.get(attempt.pk)
        if result is not None and result.status != attempt.status:
            answered.append((attempt, result))
        else:
            unchanged.append(attempt)
    for start in range(0, len(answered), APPLY_CHUNK):
        applied, refused = _apply_together(answered[start : start + APPLY_CHUNK], now=now)
        alone.extend(refused)
        unchanged.extend(a for a in applied if a.status in OPEN_ATTEMPT_STATUSES)
        for attempt in applied:
            statuses[attempt.pk] = attempt.status
            if attempt.status == AttemptStatus.SUCCEEDED:
                metrics.observe_confirmation(attempt, now)
    for attempt in unchanged:
        _schedule_next(attempt, now=now)
        statuses.setdefault(attempt.pk, attempt.status)
    for attempt_id in alone:
        statuses[attempt_id] = janitor_check(attempt_id=attempt_id, now=now, channels=channels)
    return statuses


def _query_all(
    attempts: Sequence[PaymentAttempt], channels: ChannelFactory
) -> dict[int, TradeResult]:
    """The channels' answers by attempt id; those sent in one batch are asked with one
    batch query. An attempt missing from the answers could not be asked now."""
    answers: dict[int, TradeResult] = {}
    by_batch: dict[DebitBatch, list[PaymentAttempt]] = {}
    batching: dict[str, bool] = {}
    for attempt in attempts:
        if attempt.channel not in batching:
            batching[attempt.channel] = isinstance(channels(attempt.channel), BatchDebitChannel)
        if attempt.debit_batch is not None and batching[attempt.channel]:
            by_batch.setdefault(attempt.debit_batch, []).append(attempt)
        elif (result := _query(attempt, channels)) is not None:
            answers[attempt.pk] = result
    for batch, lines in by_batch.items():
        channel = cast(BatchDebitChannel, channels(batch.channel))
        try:
            found = channel.query_debit_batch(
                batch_no=batch.batch_no,
                placed_at=batch.placed_at,
                out_trade_nos=[attempt.out_trade_no for attempt in lines],
                sent_at=batch.sent_at,
            )
        except (ChannelUnavailable, ChannelOutcomeUnknown, ChannelDeclined) as exc:
            metrics.channel_queries.labels(batch.channel, "error").inc()
            logger.info("status query for batch %s failed: %s", batch, exc)
            continue
        metrics.channel_queries.labels(batch.channel, "ok").inc()
        answers.update({a.pk: found[a.out_trade_no] for a in lines if a.out_trade_no in found})
    return answers


def _query(attempt: PaymentAttempt, channels: ChannelFactory) -> TradeResult | None:
    """The channel's answer, or None when it could not give one now (asked again later)."""
    try:
        result = attempt_channel_query(attempt, channels)
    except (ChannelUnavailable, ChannelOutcomeUnknown, ChannelDeclined) as exc:
        metrics.channel_queries.labels(attempt.channel, "error").inc()
        logger.info("status query for %s failed: %s", attempt.out_trade_no, exc)
        return None
    metrics.channel_queries.labels(attempt.channel, "ok").inc()
    return result


def _apply_together(
    answered: Sequence[tuple[PaymentAttempt, TradeResult]], *, now: datetime
) -> tuple[list[PaymentAttempt], list[int]]:
    """Apply answers in one transaction: the attempts as applied, and the ids of
    those refused (nothing is written for a refused one, see channel_result_apply_locked)."""
    applied: list[PaymentAttempt] = []
    refused: list[int] = []
    timeline: list[PaymentEvent] = []
    with transaction.atomic(), audit_batch():
        locked_by_id = attempts_lock({(a.pk, a.payment_id) for a, _ in answered})
        pairs = [locked_by_id[a.pk] for a, _ in answered]
        reports = [
            (payment, result.status)
            for (payment, _), (_, result) in zip(pairs, answered, strict=True)
        ]
        with outcomes_applied_together(reports):
            for (payment, locked), (attempt, result) in zip(pairs, answered, strict=True):
                try:
                    applied.append(
                        channel_result_apply_locked(
                            payment=payment,
                            attempt=locked,
                            result=result,
                            source=EventKind.POLL,
                            now=now,
                            evidence={"query": attempt.query_count + 1},
                            timeline=timeline,
                        )
                    )
                except (AmountMismatch, IllegalTransition):
                    refused.append(attempt.pk)
            PaymentEvent.objects.bulk_create(timeline)  # every answer's events at once
    return applied, refused


def attempt_query_now(
    *, attempt_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> bool:
    """Ask at once for a processing payment someone is looking at (rate-limited).

    Returns whether a query was sent; a second call within the interval is a no-op,
    so a page polling every few seconds cannot flood the channel.
    """
    if not cache.add(f"attempt-query-now:{attempt_id}", 1, IMMEDIATE_QUERY_INTERVAL_SECONDS):
        return False
    janitor_check(attempt_id=attempt_id, now=now, channels=channels)
    return True


def _ask(attempt: PaymentAttempt, *, now: datetime, channels: ChannelFactory) -> PaymentAttempt:
    if _expired_wallet_order(attempt, now):
        return attempt_settle_or_close(attempt, now=now, channels=channels)
    result = attempt_channel_query(attempt, channels)
    if result.status == attempt.status:
        return attempt  # nothing new: keep the timeline free of repeated polls
    return channel_result_apply(
        attempt_id=attempt.pk,
        result=result,
        source=EventKind.POLL,
        now=now,
        evidence={"query": attempt.query_count + 1},
        payment_id=attempt.payment_id,
    )


def _expired_wallet_order(attempt: PaymentAttempt, now: datetime) -> bool:
    return (
        attempt.method_type not in CARD_METHODS
        and attempt.status == AttemptStatus.PENDING
        and now >= attempt.created_at + WALLET_ORDER_TTL
    )


def _schedule_next(attempt: PaymentAttempt, *, now: datetime) -> None:
    following = next_query_at(attempt.created_at, now)
    review = following is None
    with transaction.atomic():
        current = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        if current.status not in OPEN_ATTEMPT_STATUSES:
            return  # a callback finished it while we asked
        current.query_count += 1
        current.next_query_at = following or now + REVIEW_QUERY_INTERVAL
        if review and not current.needs_review:
            current.needs_review = True
            timeline_record(
                payment=current.payment,
                attempt=current,
                kind=EventKind.NOTE,
                summary=f"{current.out_trade_no} unresolved after the notify window: review",
                now=now,
                data={"needs_review": True},
            )
        current.save(update_fields=["query_count", "next_query_at", "needs_review"])


def _hold_for_review(attempt: PaymentAttempt, *, now: datetime, reason: str) -> None:
    with transaction.atomic():
        current = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        current.needs_review = True
        current.next_query_at = now + REVIEW_QUERY_INTERVAL
        current.save(update_fields=["needs_review", "next_query_at"])
        timeline_record(
            payment=current.payment,
            attempt=current,
            kind=EventKind.NOTE,
            summary=f"{current.out_trade_no} held for review: {reason}",
            now=now,
            data={"needs_review": True, "reason": reason},
        )
