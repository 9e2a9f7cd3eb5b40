"""Sending attempts to channels, and falling back without ever charging twice (rule 4).

Network calls never run inside a database transaction: each step commits what
is known (the attempt exists; the channel said X) before the next call, so a
crash between steps leaves an attempt that status sync can query, never money
we do not know about.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from repayments.channels.base import (
    BatchDebitChannel,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    DebitBatchLine,
    NextAction,
    OrderRequest,
    PaymentChannel,
    RefundResult,
    TradeResult,
)
from repayments.domain.errors import DomainError
from repayments.domain.states import AttemptStatus
from repayments.models import (
    Channel,
    DebitBatch,
    EventKind,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
)
from repayments.services.audit import audit_batch
from repayments.services.methods import METHOD_CHANNEL, UNREACHABLE_FAILURE_CODE
from repayments.services.payments import (
    Outcome,
    attempt_apply_locked,
    attempt_lock,
    attempt_open,
    attempt_record_outcome,
)
from repayments.services.timeline import timeline_record

ChannelFactory = Callable[[str], PaymentChannel]

# A wallet order left unpaid this long can no longer be paid at the channel, so an
# abandoned QR code or checkout page cannot take money after a fallback.
WALLET_ORDER_TTL = timedelta(minutes=30)
CARD_METHODS = frozenset({PaymentMethodType.BANK_DEBIT_CARD, PaymentMethodType.BANK_CREDIT_CARD})
# Close answers that prove the order can take no money: it never reached the channel.
NEVER_CREATED_CODES = frozenset({"ORDER_NOT_EXIST", "ORDER_NOT_FOUND"})
# Batch numbers run 0001-9999 per channel and day (UnionPay's four digits).
MAX_BATCH_NUMBER = 9999
# Each clash means another worker took a number; a few dozen workers at once still pass.
_BATCH_NUMBER_TRIES = 32


class FallbackNotSafe(DomainError):
    """The earlier attempt may still take money; it must be resolved before another one."""

    code = "fallback_not_safe"


class AmountMismatch(DomainError):
    """The channel reports another amount than the order: kept aside, never booked."""

    code = "amount_mismatch"


@dataclass(frozen=True)
class Started:
    attempt: PaymentAttempt
    next_action: NextAction


@functools.cache
def default_channel(name: str) -> PaymentChannel:
    """The configured adapter for ``name``, built once per process.

    Loading an RSA key costs tens of milliseconds, far more than the call it signs.
    """
    if name == Channel.ALIPAY:
        from repayments.channels.alipay import AlipayChannel, AlipayConfig

        return AlipayChannel(AlipayConfig.from_settings())
    if name == Channel.WECHATPAY:
        from repayments.channels.wechatpay import WechatPayChannel, WechatPayConfig

        return WechatPayChannel(WechatPayConfig.from_settings())
    from repayments.channels.unionpay import UnionPayChannel, UnionPayConfig

    return UnionPayChannel(UnionPayConfig.from_settings())


def payment_start(
    *,
    payment_id: int,
    method_type: PaymentMethodType,
    now: datetime,
    card_token: str = "",
    channels: ChannelFactory = default_channel,
) -> Started:
    """Open an attempt through the method's channel and record what the channel said.

    :raises AttemptAlreadyOpen, MethodNotAllowed, PaymentNotPayable: from attempt_open.
    """
    channel_name = METHOD_CHANNEL[method_type]
    attempt = attempt_open(
        payment_id=payment_id, channel=channel_name, method_type=method_type, now=now
    )
    outcome, next_action = attempt_send(attempt, now=now, card_token=card_token, channels=channels)
    attempt = attempt_record_outcome(
        attempt_id=attempt.pk, outcome=outcome, now=now, payment_id=attempt.payment_id
    )
    return Started(attempt, next_action)


def attempt_send(
    attempt: PaymentAttempt, *, now: datetime, card_token: str, channels: ChannelFactory
) -> tuple[Outcome, NextAction]:
    """Send an opened attempt to its channel (outside any transaction) and say what
    the answer means; recording it is the caller's, with attempt_record_outcome or,
    for several at once, attempt_apply_locked."""
    channel_name, method_type = attempt.channel, PaymentMethodType(attempt.method_type)
    request = OrderRequest(
        out_trade_no=attempt.out_trade_no,
        amount=attempt.amount,
        subject=f"Car loan repayment {attempt.out_trade_no}",
        notify_url=f"{settings.PORTAL_BASE_URL}/callbacks/{channel_name}/",
        # Where the channel's checkout sends the borrower back: the payment's own
        # page, which shows it as being confirmed until the notify arrives.
        return_url=f"{settings.PORTAL_BASE_URL}/record/{attempt.payment.public_id}/",
        method_type=method_type,
        card_token=card_token,
        placed_at=attempt.created_at,
        expires_at=None if method_type in CARD_METHODS else now + WALLET_ORDER_TTL,
    )
    try:
        created = channels(channel_name).create_order(request)
    except ChannelError as exc:
        return _request_failed(exc), NextAction("none")
    return outcome_from(created.result, EventKind.REQUEST, attempt), created.next_action


def _request_failed(exc: ChannelError) -> Outcome:
    """What an order request that raised means for its attempt."""
    if isinstance(exc, ChannelDeclined):
        return _failed(exc.code, exc.message)
    if isinstance(exc, ChannelUnavailable):
        # Refused before any money moved: safe to offer another method at once.
        return _failed(UNREACHABLE_FAILURE_CODE, exc.code)
    # Outcome unknown, or an error no adapter should raise: money may have moved.
    return Outcome(AttemptStatus.UNKNOWN, EventKind.REQUEST, failure_code=exc.code)


def attempts_send_batch(
    sends: Sequence[tuple[PaymentAttempt, str]], *, now: datetime, channels: ChannelFactory
) -> list[Outcome]:
    """Send opened card attempts (each with its card token) and say what each answer
    means, as :func:`attempt_send` would one by one.

    Where the channel takes batch files, attempts opened at the same moment go out
    as one batch (up to the channel's size limit), recorded on the attempts before
    it is sent, so that status sync asks for their results by batch even after a
    crash. Otherwise, or when no batch number is left for the day, one by one.
    """
    outcomes: dict[int, Outcome] = {}
    groups: dict[tuple[str, datetime], list[tuple[PaymentAttempt, str]]] = {}
    for attempt, token in sends:
        groups.setdefault((attempt.channel, attempt.created_at), []).append((attempt, token))
    for (channel_name, placed_at), group in groups.items():
        channel = channels(channel_name)
        size = channel.max_batch_lines if isinstance(channel, BatchDebitChannel) else 1
        for start in range(0, len(group), size):
            part = group[start : start + size]
            batch = _debit_batch_open(channel_name, placed_at, part) if len(part) > 1 else None
            if batch is None or not isinstance(channel, BatchDebitChannel):
                for attempt, token in part:
                    outcomes[attempt.pk] = attempt_send(
                        attempt, now=now, card_token=token, channels=channels
                    )[0]
                continue
            answers = channel.submit_debit_batch(
                batch_no=batch.batch_no,
                placed_at=placed_at,
                lines=[DebitBatchLine(a.out_trade_no, a.amount, token) for a, token in part],
            )
            for (attempt, _), answer in zip(part, answers, strict=True):
                outcomes[attempt.pk] = (
                    _request_failed(answer)
                    if isinstance(answer, ChannelError)
                    else outcome_from(answer, EventKind.REQUEST, attempt)
                )
    return [outcomes[attempt.pk] for attempt, _ in sends]


def _debit_batch_open(
    channel: str, placed_at: datetime, part: Sequence[tuple[PaymentAttempt, str]]
) -> DebitBatch | None:
    """Take the day's next batch number and record the attempts as its lines (committed).

    None when the day's numbers are used up. Two workers taking the same number
    meet at the unique constraint; the loser takes the next one.
    """
    placed_on = timezone.localdate(placed_at)
    for _ in range(_BATCH_NUMBER_TRIES):
        taken = DebitBatch.objects.filter(channel=channel, placed_on=placed_on).aggregate(
            last=Max("batch_no")
        )["last"]
        number = int(taken or 0) + 1
        if number > MAX_BATCH_NUMBER:
            return None
        try:
            with transaction.atomic():
                batch = DebitBatch.objects.create(
                    channel=channel,
                    batch_no=f"{number:04d}",
                    placed_on=placed_on,
                    placed_at=placed_at,
                    sent_at=timezone.now(),  # the file leaves right after this commits
                    line_count=len(part),
                    total_amount=sum((attempt.amount for attempt, _ in part), Decimal(0)),
                )
                PaymentAttempt.objects.filter(pk__in=[a.pk for a, _ in part]).update(
                    debit_batch=batch
                )
        except IntegrityError:
            continue
        for attempt, _ in part:
            attempt.debit_batch = batch
        return batch
    return None


def attempt_channel_query(attempt: PaymentAttempt, channels: ChannelFactory) -> TradeResult:
    """Ask the attempt's channel where the attempt stands, by its order number.

    For a line of a batch, "no such order" proves nothing on its own (the bank may
    hold the batch and not have reached the line yet, and the order's own time is
    earlier than the file's leaving), so its batch decides then: one query for the
    rare line not found, not a whole result file for every look-up.

    :raises ChannelError: as the channel's query raises it.
    """
    channel = channels(attempt.channel)
    result = channel.query(attempt.out_trade_no, placed_at=attempt.created_at)
    if result.failure_code not in NEVER_CREATED_CODES or attempt.debit_batch_id is None:
        return result
    batch = attempt.debit_batch
    if batch is None or not isinstance(channel, BatchDebitChannel):
        return result
    return channel.query_debit_batch(
        batch_no=batch.batch_no,
        placed_at=batch.placed_at,
        out_trade_nos=[attempt.out_trade_no],
        sent_at=batch.sent_at,
    )[attempt.out_trade_no]


def attempt_query(
    *, attempt_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> PaymentAttempt:
    """Ask the channel where an attempt stands and record the answer (a poll).

    :raises ChannelUnavailable: when the channel cannot answer now (try later).
    :raises AmountMismatch: when the channel reports another amount.
    """
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    result = attempt_channel_query(attempt, channels)
    if result.status == attempt.status:
        return attempt  # nothing new; keep the timeline free of repeated polls
    outcome = outcome_from(result, EventKind.POLL, attempt)
    with transaction.atomic(), audit_batch():
        payment, attempt = attempt_lock(attempt_id=attempt_id, payment_id=attempt.payment_id)
        return attempt_apply_locked(payment=payment, attempt=attempt, outcome=outcome, now=now)


def channel_result_apply(
    *,
    attempt_id: int,
    result: TradeResult,
    source: EventKind,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
    payment_id: int | None = None,
) -> PaymentAttempt:
    """Apply what a channel reported (callback, query or statement line) to an attempt.

    The one path by which any channel report changes our books: the amount is
    checked against the order, then the state machine decides (rule 2).
    ``payment_id``, when the caller knows it, saves a read.

    :raises AmountMismatch: when the channel reports another amount.
    :raises IllegalTransition: for a result the state machine cannot accept.
    """
    with transaction.atomic(), audit_batch():
        payment, attempt = attempt_lock(attempt_id=attempt_id, payment_id=payment_id)
        return channel_result_apply_locked(
            payment=payment,
            attempt=attempt,
            result=result,
            source=source,
            now=now,
            evidence=evidence,
        )


def channel_result_apply_locked(
    *,
    payment: Payment,
    attempt: PaymentAttempt,
    result: TradeResult,
    source: EventKind,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
    timeline: list[PaymentEvent] | None = None,
) -> PaymentAttempt:
    """:func:`channel_result_apply` for rows the caller locked with ``attempt_lock``,
    in its transaction. Both errors are raised before anything is written, so the
    caller may catch them and go on without a savepoint. ``timeline``: as for
    :func:`attempt_apply_locked`.

    :raises AmountMismatch: when the channel reports another amount.
    :raises IllegalTransition: for a result the state machine cannot accept.
    """
    outcome = outcome_from(result, source, attempt, evidence)
    return attempt_apply_locked(
        payment=payment, attempt=attempt, outcome=outcome, now=now, timeline=timeline
    )


def payment_fallback(
    *,
    payment_id: int,
    method_type: PaymentMethodType,
    now: datetime,
    card_token: str = "",
    channels: ChannelFactory = default_channel,
) -> Started:
    """Try another method, but only once the earlier attempt is known not to have charged.

    A waiting wallet order is closed at its channel first; if the channel says it
    was paid meanwhile, the payment is booked instead and no new attempt opens.

    :raises FallbackNotSafe: while the earlier attempt's outcome is unknown.
    """
    payment = Payment.objects.get(pk=payment_id)
    previous = payment.attempts.order_by("-created_at", "-id").first()
    if previous is not None and previous.is_open:
        previous = attempt_settle_or_close(previous, now=now, channels=channels)
        if previous.status == AttemptStatus.SUCCEEDED:
            return Started(previous, NextAction("none"))
    return payment_start(
        payment_id=payment_id,
        method_type=method_type,
        now=now,
        card_token=card_token,
        channels=channels,
    )


def attempt_settle_or_close(
    attempt: PaymentAttempt, *, now: datetime, channels: ChannelFactory
) -> PaymentAttempt:
    """Bring an open attempt to a final state: book it if paid, close it if waiting.

    :raises FallbackNotSafe: while the channel itself cannot say (try again later).
    """
    channel = channels(attempt.channel)
    try:
        result = attempt_channel_query(attempt, channels)
    except (ChannelUnavailable, ChannelOutcomeUnknown) as exc:
        raise FallbackNotSafe() from exc
    if result.status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CLOSED):
        return _record(attempt, outcome_from(result, EventKind.POLL, attempt), now)
    if result.status != AttemptStatus.PENDING:
        raise FallbackNotSafe()  # the channel itself does not know yet
    if attempt.debit_batch_id is not None:
        # A line of a batch the bank holds settles by itself, and a cancel would ask
        # for it alone: wait for its result instead.
        raise FallbackNotSafe()
    try:
        channel.close(attempt.out_trade_no, placed_at=attempt.created_at)
    except ChannelDeclined as exc:
        if exc.code in NEVER_CREATED_CODES:
            return _record(attempt, _closed(), now)
        if exc.code != "already_paid":
            raise FallbackNotSafe() from exc
        # Paid between our query and the close: book it, never open a second attempt.
        paid = attempt_channel_query(attempt, channels)
        return _record(attempt, outcome_from(paid, EventKind.POLL, attempt), now)
    except (ChannelUnavailable, ChannelOutcomeUnknown) as exc:
        raise FallbackNotSafe() from exc
    return _record(attempt, _closed(), now)


def attempt_refund_duplicate(
    *, attempt_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> bool:
    """Refund an attempt that took money for a payment another attempt already paid.

    Only an attempt flagged ``refund_required`` on its payment's timeline, and not
    yet refunded, is sent. Returns whether this call got a refund confirmed.
    """
    attempt = PaymentAttempt.objects.select_related("payment").get(pk=attempt_id)
    events = PaymentEvent.objects.filter(payment_id=attempt.payment_id)
    flagged = events.filter(kind=EventKind.NOTE, data__refund_required=attempt.out_trade_no)
    done = events.filter(kind=EventKind.REFUND, attempt=attempt, data__succeeded=True)
    if attempt.status != AttemptStatus.SUCCEEDED or not flagged.exists() or done.exists():
        return False  # not a duplicate, or already refunded: nothing to send
    refund_no = f"RF{attempt.out_trade_no}"[:64]
    try:
        result = channels(attempt.channel).refund(
            out_trade_no=attempt.out_trade_no,
            refund_no=refund_no,
            amount=attempt.amount,
            reason="duplicate payment",
            placed_at=attempt.created_at,
        )
    except ChannelDeclined as exc:
        # Refused before anything was sent (the channel says the order is not paid...):
        # the timeline shows it, and the next sweep asks again.
        result = RefundResult(refund_no, succeeded=False, failure_code=exc.code)
    refused_before = events.filter(
        kind=EventKind.REFUND,
        attempt=attempt,
        data__succeeded=False,
        data__failure_code=result.failure_code,
    )
    if not result.succeeded and refused_before.exists():
        return False  # the same refusal is on the timeline once, not once per sweep
    outcome = "confirmed" if result.succeeded else "not confirmed"
    timeline_record(
        payment=attempt.payment,
        attempt=attempt,
        kind=EventKind.REFUND,
        summary=f"duplicate {attempt.out_trade_no} refund {outcome}",
        now=now,
        data={
            "refund_no": result.refund_no,
            "succeeded": result.succeeded,
            "failure_code": result.failure_code,
        },
    )
    return result.succeeded


def duplicates_refund(*, now: datetime, channels: ChannelFactory = default_channel) -> int:
    """Refund every flagged duplicate not yet refunded (the flag is written with the
    state change, so this sweep finds it even after a crash). Returns refunds confirmed."""
    notes = PaymentEvent.objects.filter(kind=EventKind.NOTE, data__has_key="refund_required")
    confirmed = 0
    for payment_id, out_trade_no in notes.values_list("payment_id", "data__refund_required"):
        attempt = PaymentAttempt.objects.get(payment_id=payment_id, out_trade_no=out_trade_no)
        try:
            confirmed += attempt_refund_duplicate(attempt_id=attempt.pk, now=now, channels=channels)
        except (ChannelUnavailable, ChannelOutcomeUnknown):
            continue  # the refund number is fixed, so the next sweep retries it safely
    return confirmed


def _record(attempt: PaymentAttempt, outcome: Outcome, now: datetime) -> PaymentAttempt:
    return attempt_record_outcome(
        attempt_id=attempt.pk, outcome=outcome, now=now, payment_id=attempt.payment_id
    )


def _closed() -> Outcome:
    return Outcome(AttemptStatus.CLOSED, EventKind.REQUEST, failure_code="closed_for_fallback")


def _failed(code: str, message: str) -> Outcome:
    return Outcome(
        AttemptStatus.FAILED, EventKind.REQUEST, failure_code=code, failure_message=message
    )


def outcome_from(
    result: TradeResult,
    source: EventKind,
    attempt: PaymentAttempt,
    evidence: Mapping[str, Any] | None = None,
) -> Outcome:
    """Turn a channel's report into an outcome for the state machine.

    :raises AmountMismatch: a success for another amount than the order's.
    """
    if (
        result.status == AttemptStatus.SUCCEEDED
        and result.amount is not None
        and result.amount != attempt.amount
    ):
        raise AmountMismatch(f"{attempt.out_trade_no}: channel says {result.amount}")
    return Outcome(
        status=result.status,
        source=source,
        accepted_at=result.accepted_at,
        channel_trade_no=result.channel_trade_no,
        failure_code=result.failure_code,
        failure_message=result.failure_message,
        evidence=evidence or {},
    )
