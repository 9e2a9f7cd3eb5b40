"""The callback inbox: store first, verify, then apply once (rules 1 and 2).

A channel notification is committed as raw bytes before the channel gets any
answer, so nothing it told us can be lost: if verification, the broker or a
worker fails later, the row is still ``received`` and the sweeper processes it
again. Processing re-reads the raw row (so a fixed parser can replay a
quarantined one) and is idempotent: the row is locked, and a row already out of
``received`` is left alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F

from repayments import metrics
from repayments.channels.base import (
    CallbackAck,
    CallbackRejected,
    CallbackUnparseable,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    TradeResult,
)
from repayments.domain.states import AttemptStatus, IllegalTransition
from repayments.models import (
    CallbackStatus,
    EventKind,
    InboundCallbackRecord,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    User,
)
from repayments.services.audit import audit_append, audit_batch
from repayments.services.payments import attempt_lock, attempts_lock, outcomes_applied_together
from repayments.services.routing import (
    AmountMismatch,
    ChannelFactory,
    attempt_channel_query,
    channel_result_apply_locked,
    default_channel,
)
from repayments.services.write_behind import update_rows

logger = logging.getLogger(__name__)

# A row still ``received`` this long after arrival lost its processing message.
SWEEP_AFTER = timedelta(seconds=60)
# Rows one worker processes in one transaction when it drains the inbox.
BATCH_SIZE = 50
# What finishing a row writes.
FINISHED_FIELDS = [
    "status",
    "error",
    "processed_at",
    "attempt",
    "tries",
    "out_trade_no",
    "reported_status",
]
# A row that crashes processing this often is quarantined instead of retried forever.
MAX_TRIES = 8
# How far each status is along the way; a report below what we hold is stale.
STATUS_RANK = {
    AttemptStatus.SUBMITTING: 0,
    AttemptStatus.PENDING: 1,
    AttemptStatus.UNKNOWN: 1,
    AttemptStatus.FAILED: 2,
    AttemptStatus.CLOSED: 2,
    AttemptStatus.SUCCEEDED: 3,
}
PAID = frozenset({AttemptStatus.SUCCEEDED})
NOT_PAID = frozenset({AttemptStatus.FAILED, AttemptStatus.CLOSED})
# Headers worth keeping: the signature set and what identifies the sender.
KEPT_HEADER_PREFIXES = ("wechatpay-", "content-", "user-agent", "x-forwarded-for", "request-id")


@dataclass(frozen=True)
class Verdict:
    """What the endpoint answers: the channel's own acknowledgement, or an error."""

    status: CallbackStatus
    ack: CallbackAck


def callback_receive(
    *,
    channel: str,
    body: bytes,
    headers: Mapping[str, str],
    remote_addr: str | None,
    now: datetime,
    channels: ChannelFactory = default_channel,
) -> tuple[InboundCallbackRecord, Verdict]:
    """Store a callback durably, then verify it and choose the answer.

    The row is committed before verification starts. A rejected callback gets an
    error answer and changes nothing; a verified one the adapter cannot read is
    quarantined and acknowledged (we hold it; resending would only add copies);
    a good one is acknowledged and left ``received`` for :func:`callback_process`.
    """
    kept = {k.lower(): v for k, v in headers.items() if k.lower().startswith(KEPT_HEADER_PREFIXES)}
    # One INSERT in autocommit: committed before verification starts, without the
    # extra round trips of an explicit transaction (this is the hot path).
    record = InboundCallbackRecord.objects.create(
        channel=channel,
        body=body,
        headers=kept,
        remote_addr=remote_addr,
        received_at=now,
    )
    metrics.callbacks_received.labels(channel).inc()
    adapter = channels(channel)
    try:
        result = adapter.parse_callback(InboundCallback(body, kept), now=now)
    except CallbackRejected as exc:
        _finish(record, CallbackStatus.REJECTED, now=now, error=str(exc))
        return record, Verdict(CallbackStatus.REJECTED, _rejection(channel, str(exc)))
    except CallbackUnparseable as exc:
        _quarantine(record, str(exc), now=now)
        return record, Verdict(CallbackStatus.QUARANTINED, adapter.callback_ack())
    except Exception as exc:  # an adapter bug must not lose the callback or answer 500
        logger.exception("callback %s: the %s adapter failed", record.pk, channel)
        _quarantine(record, f"adapter error: {exc!r}", now=now)
        return record, Verdict(CallbackStatus.QUARANTINED, adapter.callback_ack())
    del result  # processing parses the stored bytes again and records what they say
    return record, Verdict(CallbackStatus.RECEIVED, adapter.callback_ack())


def callback_process(
    *, record_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> str:
    """Apply one stored callback to its attempt, once. Safe to run any number of times.

    :raises ChannelUnavailable: when the callback contradicts our books and the
        channel cannot be asked now; the row stays ``received`` for a retry.
    """
    # Counted outside the processing transaction, so a try that crashes still counts.
    InboundCallbackRecord.objects.filter(pk=record_id, status=CallbackStatus.RECEIVED).update(
        tries=F("tries") + 1
    )
    # One transaction, no savepoints: the rows are locked once and passed down, and
    # the audit entries are chained at its end (the chain head is locked briefly).
    with transaction.atomic(), audit_batch():
        records = list(InboundCallbackRecord.objects.select_for_update().filter(pk=record_id))
        processed = _process_locked(records, now=now, channels=channels)
    if record_id in processed.statuses:
        return processed.statuses[record_id]
    if record_id in processed.contradicted:
        return _settle_contradiction(record_id, *processed.contradicted[record_id], now, channels)
    # The row vanished (never seen outside tests): report it like ``.get()`` would.
    raise InboundCallbackRecord.DoesNotExist(record_id)


def callbacks_process_batch(
    *, now: datetime, limit: int = BATCH_SIZE, channels: ChannelFactory = default_channel
) -> Counter[str]:
    """Process up to ``limit`` stored rows in one transaction; returns how many ended
    in each status (``received``: left for a retry).

    Rows another worker holds are skipped, so workers draining the inbox at once
    each take their own rows. Each payment is still locked, and each row applied
    once, exactly as :func:`callback_process` does, by the same code. If anything
    in the batch fails, the whole batch rolls back and its rows are processed one
    by one, so one bad row can neither lose nor block the others. A row that
    contradicts our books is settled afterwards, one at a time (it asks the
    channel, outside any transaction).
    """
    claimed: list[int] = []
    try:
        with transaction.atomic(), audit_batch():
            records = list(
                InboundCallbackRecord.objects.select_for_update(skip_locked=True)
                .filter(status=CallbackStatus.RECEIVED)
                .order_by("pk")[:limit]
            )
            claimed = [record.pk for record in records]
            for record in records:
                # Saved with the row's outcome; a rolled-back batch is counted again below.
                record.tries += 1
            processed = _process_locked(records, now=now, channels=channels)
    except Exception:
        if not claimed:
            raise
        logger.exception(
            "callback batch of %d failed; processing its rows one by one", len(claimed)
        )
        return _process_each(claimed, now=now, channels=channels)
    outcomes = Counter(processed.statuses.values())
    outcomes.update(_process_each(list(processed.contradicted), now=now, channels=channels))
    return outcomes


def _process_each(
    record_ids: Iterable[int], *, now: datetime, channels: ChannelFactory
) -> Counter[str]:
    """Process rows one at a time; a row that fails stays ``received`` for a retry."""
    outcomes: Counter[str] = Counter()
    for record_id in record_ids:
        try:
            outcomes[callback_process(record_id=record_id, now=now, channels=channels)] += 1
        except (ChannelUnavailable, ChannelOutcomeUnknown):
            outcomes[CallbackStatus.RECEIVED] += 1  # the sweeper retries it
        except Exception:
            logger.exception("callback %s failed; left for the sweeper", record_id)
            outcomes[CallbackStatus.RECEIVED] += 1
    return outcomes


@dataclass
class _Processed:
    """What one pass over locked rows did: each finished row's status, and the rows
    left ``received`` because they contradict our books (with what they said)."""

    statuses: dict[int, str]
    contradicted: dict[int, tuple[TradeResult, PaymentAttempt]]


def _process_locked(
    records: list[InboundCallbackRecord], *, now: datetime, channels: ChannelFactory
) -> _Processed:
    """Apply locked inbox rows, in the caller's transaction (one or many rows)."""
    done = _Processed({}, {})
    readable: list[tuple[InboundCallbackRecord, TradeResult]] = []
    fresh = [record for record in records if record.status == CallbackStatus.RECEIVED]
    for record in records:
        if record.status != CallbackStatus.RECEIVED:
            done.statuses[record.pk] = record.status
        elif record.tries > MAX_TRIES:
            _quarantine(
                record, f"processing failed {MAX_TRIES} times; see the logs", now=now, save=False
            )
            done.statuses[record.pk] = CallbackStatus.QUARANTINED
        else:
            parsed = _parse(record, channels)
            if isinstance(parsed, str):
                done.statuses[record.pk] = parsed
            else:
                record.out_trade_no = parsed.out_trade_no[:64]
                record.reported_status = parsed.status
                readable.append((record, parsed))
    if readable:
        # Every row the batch changes is locked and held in memory: the attempts,
        # payments, loans and installments are written once, together, at the end,
        # with the allocations and the notices.
        _apply_readable(readable, done, now=now)
    # Every finished row in one statement, in the same transaction as its effect.
    _save_finished([record for record in fresh if record.status != CallbackStatus.RECEIVED])
    return done


def _save_finished(records: list[InboundCallbackRecord]) -> None:
    """Write finished rows: one UPDATE each, sent together."""
    update_rows(InboundCallbackRecord, records, FINISHED_FIELDS)


def _apply_readable(
    readable: list[tuple[InboundCallbackRecord, TradeResult]],
    done: _Processed,
    *,
    now: datetime,
) -> None:
    """Find and lock the attempts the rows name, all at once, and apply each row."""
    numbers = {parsed.out_trade_no for _, parsed in readable}
    found = {
        (channel, number): (attempt_id, payment_id)
        for attempt_id, payment_id, channel, number in PaymentAttempt.objects.filter(
            out_trade_no__in=numbers
        ).values_list("pk", "payment_id", "channel", "out_trade_no")
    }
    locked = attempts_lock(
        {found[key] for key in ((r.channel, p.out_trade_no) for r, p in readable) if key in found}
    )
    reports = [
        (locked[key[0]][0], parsed.status)
        for record, parsed in readable
        if (key := found.get((record.channel, parsed.out_trade_no))) is not None
    ]
    timeline: list[PaymentEvent] = []
    with outcomes_applied_together(reports):
        _apply_each(readable, found, locked, done, timeline, now=now)
        PaymentEvent.objects.bulk_create(timeline)  # every row's events in one statement


def _apply_each(
    readable: list[tuple[InboundCallbackRecord, TradeResult]],
    found: dict[tuple[str, str], tuple[int, int]],
    locked: dict[int, tuple[Payment, PaymentAttempt]],
    done: _Processed,
    timeline: list[PaymentEvent],
    *,
    now: datetime,
) -> None:
    for record, parsed in readable:
        key = found.get((record.channel, parsed.out_trade_no))
        if key is None:
            _finish(
                record,
                CallbackStatus.UNMATCHED,
                now=now,
                error="no attempt with this number",
                save=False,
            )
            logger.warning("callback %s names unknown order %s", record.pk, parsed.out_trade_no)
            done.statuses[record.pk] = CallbackStatus.UNMATCHED
            continue
        payment, attempt = locked[key[0]]
        if _contradicts(attempt.status, parsed.status):
            done.contradicted[record.pk] = (parsed, attempt)
            continue
        done.statuses[record.pk] = _apply(
            record,
            payment,
            attempt,
            parsed,
            EventKind.CALLBACK,
            now=now,
            save=False,
            timeline=timeline,
        )


def _settle_contradiction(
    record_id: int,
    parsed: TradeResult,
    attempt: PaymentAttempt,
    now: datetime,
    channels: ChannelFactory,
) -> str:
    """The channel says the opposite of a final state we hold: ask it, outside any
    transaction, and trust the answer rather than either message."""
    try:
        queried = attempt_channel_query(attempt, channels)
    except (ChannelUnavailable, ChannelOutcomeUnknown):
        metrics.channel_queries.labels(attempt.channel, "error").inc()
        raise
    metrics.channel_queries.labels(attempt.channel, "ok").inc()
    with transaction.atomic(), audit_batch():
        record = InboundCallbackRecord.objects.select_for_update().get(pk=record_id)
        if record.status != CallbackStatus.RECEIVED:
            return record.status
        payment, attempt = attempt_lock(attempt_id=attempt.pk, payment_id=attempt.payment_id)
        return _apply(
            record,
            payment,
            attempt,
            queried,
            EventKind.POLL,
            now=now,
            note=f"callback said {parsed.status}; query says {queried.status}",
        )


def callbacks_due_for_sweep(*, now: datetime, limit: int = 500) -> list[int]:
    """Rows stored but never processed (lost message, dead worker), oldest first."""
    return list(
        InboundCallbackRecord.objects.filter(
            status=CallbackStatus.RECEIVED, received_at__lte=now - SWEEP_AFTER
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def callbacks_requeue(*, statuses: Iterable[str], ids: Iterable[int] | None = None) -> list[int]:
    """Put quarantined (or other finished) rows back to ``received`` for a replay."""
    rows = InboundCallbackRecord.objects.filter(status__in=list(statuses))
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    with transaction.atomic():
        picked = list(rows.select_for_update().values_list("pk", flat=True))
        InboundCallbackRecord.objects.filter(pk__in=picked).update(
            status=CallbackStatus.RECEIVED, processed_at=None, tries=0
        )
    return picked


def callbacks_replay(
    *,
    now: datetime,
    statuses: Iterable[str] = (CallbackStatus.QUARANTINED,),
    ids: Iterable[int] | None = None,
    actor: User | None = None,
    channels: ChannelFactory = default_channel,
) -> Counter[str]:
    """Process stored rows again (after a parser fix); returns how many ended in each status.

    Each replay is audited with who asked, as it can move money on our books.
    """
    picked = callbacks_requeue(statuses=statuses, ids=ids)
    outcomes: Counter[str] = Counter()
    for record_id in picked:
        try:
            outcomes[callback_process(record_id=record_id, now=now, channels=channels)] += 1
        except (ChannelUnavailable, ChannelOutcomeUnknown):
            outcomes[CallbackStatus.RECEIVED] += 1  # the sweeper retries it
    if picked:
        audit_append(
            action="callbacks.replayed",
            object_type="inbound_callback",
            object_id=",".join(str(i) for i in picked)[:64],
            now=now,
            actor=actor,
            data={"ids": picked, "outcomes": dict(outcomes)},
        )
    return outcomes


def _parse(record: InboundCallbackRecord, channels: ChannelFactory) -> TradeResult | str:
    """Verify and read the raw row, as of when it arrived (the replay window); a row
    that fails is finished (the caller saves it)."""
    callback = InboundCallback(bytes(record.body), dict(record.headers))
    try:
        return channels(record.channel).parse_callback(callback, now=record.received_at)
    except CallbackRejected as exc:
        _finish(record, CallbackStatus.REJECTED, now=record.received_at, error=str(exc), save=False)
        return CallbackStatus.REJECTED
    except CallbackUnparseable as exc:
        _quarantine(record, str(exc), now=record.received_at, save=False)
        return CallbackStatus.QUARANTINED


def _contradicts(held: str, reported: AttemptStatus) -> bool:
    """A final report opposite to a final state we hold (paid vs not paid)."""
    return (held in PAID and reported in NOT_PAID) or (held in NOT_PAID and reported in PAID)


def _apply(
    record: InboundCallbackRecord,
    payment: Payment,
    attempt: PaymentAttempt,
    result: TradeResult,
    source: EventKind,
    *,
    now: datetime,
    note: str = "",
    save: bool = True,
    timeline: list[PaymentEvent] | None = None,
) -> str:
    """Apply ``result`` to the locked rows (the caller's transaction) and finish the row
    (``save=False``: the caller saves it; ``timeline``: the caller writes the events)."""
    evidence = {"callback_id": record.pk, **({"note": note} if note else {})}
    if STATUS_RANK[result.status] < STATUS_RANK[AttemptStatus(attempt.status)]:
        # Stale (an earlier message arriving late): recorded on the row, not the timeline.
        _finish(
            record, CallbackStatus.PROCESSED, now=now, attempt=attempt, error="stale", save=save
        )
        return CallbackStatus.PROCESSED
    try:
        # Both errors come before any write, so no savepoint is needed to go on.
        channel_result_apply_locked(
            payment=payment,
            attempt=attempt,
            result=result,
            source=source,
            now=now,
            evidence=evidence,
            timeline=timeline,
        )
    except (AmountMismatch, IllegalTransition) as exc:
        logger.error("callback %s held for review: %s", record.pk, exc)
        _finish(record, CallbackStatus.HELD, now=now, attempt=attempt, error=str(exc), save=save)
        return CallbackStatus.HELD
    _finish(record, CallbackStatus.PROCESSED, now=now, attempt=attempt, error=note, save=save)
    if result.status == AttemptStatus.SUCCEEDED:
        metrics.observe_confirmation(attempt, now)
    return CallbackStatus.PROCESSED


def _quarantine(
    record: InboundCallbackRecord, error: str, *, now: datetime, save: bool = True
) -> None:
    _finish(record, CallbackStatus.QUARANTINED, now=now, error=error, save=save)
    metrics.callbacks_quarantined.labels(record.channel).inc()
    logger.error(
        "callback %s from %s quarantined (verified but not understood): %s",
        record.pk,
        record.channel,
        error,
    )


def _finish(
    record: InboundCallbackRecord,
    status: CallbackStatus,
    *,
    now: datetime,
    error: str = "",
    attempt: PaymentAttempt | None = None,
    save: bool = True,
) -> None:
    if status == CallbackStatus.REJECTED:
        metrics.callbacks_rejected.labels(record.channel).inc()
    record.status = status
    record.error = error
    record.processed_at = now
    if attempt is not None:
        record.attempt = attempt
    if save:
        record.save(update_fields=FINISHED_FIELDS)


def _rejection(channel: str, reason: str) -> CallbackAck:
    """An error in the channel's own protocol, so it knows we did not take it."""
    if channel == "wechatpay":
        body = b'{"code":"FAIL","message":"verification failed"}'
        return CallbackAck(status=401, body=body, content_type="application/json")
    return CallbackAck(status=400, body=b"fail", content_type="text/plain")
