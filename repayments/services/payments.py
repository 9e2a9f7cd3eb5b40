"""Payments and their channel attempts: creation, idempotency and the state machine.

Every status change goes through :func:`attempt_record_outcome`, which locks
the payment, checks the transition table, writes the timeline and the audit
log, and books a success to installments in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from notifications.services import notices_held
from repayments.domain.money import parse_amount
from repayments.domain.query_schedule import first_query_at
from repayments.domain.states import (
    OPEN_ATTEMPT_STATUSES,
    AttemptStatus,
    PaymentStatus,
    check_attempt_transition,
    check_payment_transition,
)
from repayments.models import (
    Channel,
    EventKind,
    Initiator,
    Loan,
    LoanStatus,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
    PaymentPurpose,
    SettlementQuote,
    User,
)
from repayments.services.allocation import BOOKING_FIELDS, loans_prelocked, payment_book
from repayments.services.audit import audit_append, audit_batch
from repayments.services.disputes import open_cases_checked
from repayments.services.errors import (
    AttemptAlreadyOpen,
    IdempotencyKeyReused,
    LoanNotRepayable,
    MethodNotAllowed,
    PaymentNotPayable,
    QuoteNotUsable,
)
from repayments.services.payment_notices import payment_notices_on_change
from repayments.services.timeline import timeline_event
from repayments.services.write_behind import save_fields, updates_deferred

PAYABLE_STATUSES = frozenset(
    {PaymentStatus.CREATED, PaymentStatus.PROCESSING, PaymentStatus.FAILED}
)
NOT_PAID_OUTCOMES = frozenset({AttemptStatus.FAILED, AttemptStatus.CLOSED})


def _fingerprint(
    *, loan: Loan, amount: Decimal, purpose: str, quote: SettlementQuote | None
) -> str:
    body = json.dumps([loan.pk, str(amount), purpose, str(quote.public_id) if quote else None])
    return hashlib.sha256(body.encode()).hexdigest()


def payment_create(
    *,
    loan: Loan,
    amount: Decimal | str,
    now: datetime,
    idempotency_key: str | None = None,
    quote: SettlementQuote | None = None,
    initiated_by: Initiator = Initiator.BORROWER,
    actor: User | None = None,
) -> Payment:
    """Create a payment for ``loan``; the same key and body return the same payment.

    Several at once, in the caller's transaction: :func:`payments_open_many`.

    :raises InvalidAmount: for a malformed amount.
    :raises IdempotencyKeyReused: when the key was used for a different body.
    :raises LoanNotRepayable: when the loan is settled.
    :raises QuoteNotUsable: for an expired, foreign or mismatched settlement quote.
    """
    value = parse_amount(amount)
    purpose = PaymentPurpose.EARLY_SETTLEMENT if quote else PaymentPurpose.INSTALLMENT
    fingerprint = _fingerprint(loan=loan, amount=value, purpose=purpose, quote=quote)
    refusal: LoanNotRepayable | QuoteNotUsable | None = None
    if loan.status != LoanStatus.ACTIVE:
        refusal = LoanNotRepayable()
    elif quote and (quote.loan_id != loan.pk or quote.valid_until < now or quote.total != value):
        refusal = QuoteNotUsable()
    if refusal is not None:
        # A replay is answered even once the loan is settled or the quote expired.
        replay = (
            _replayed(loan.borrower_id, idempotency_key, fingerprint) if idempotency_key else None
        )
        if replay:
            return replay
        raise refusal
    # Insert first: a replayed key is rare, and the unique index finds it (below)
    # without a look-up before every new payment.
    try:
        with transaction.atomic(), audit_batch():
            payment = Payment.objects.create(
                loan=loan,
                borrower_id=loan.borrower_id,
                amount=value,
                purpose=purpose,
                initiated_by=initiated_by,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
                quote=quote,
                created_at=now,
                updated_at=now,
            )
            events: list[PaymentEvent] = []
            _record_created(payment, now=now, actor=actor, events=events)
            PaymentEvent.objects.bulk_create(events)
    except IntegrityError:
        # Two requests with the same key raced; the loser answers like a replay.
        if idempotency_key:
            replay = _replayed(loan.borrower_id, idempotency_key, fingerprint)
            if replay:
                return replay
        raise
    return payment


def _replayed(borrower_id: int, key: str, fingerprint: str) -> Payment | None:
    existing = Payment.objects.filter(borrower_id=borrower_id, idempotency_key=key).first()
    if existing and existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return existing


def attempt_open(
    *,
    payment_id: int,
    channel: Channel,
    method_type: PaymentMethodType,
    now: datetime,
) -> PaymentAttempt:
    """Start one channel try for the payment with a fresh merchant order number.

    :raises PaymentNotPayable: when the payment already succeeded or was cancelled.
    :raises MethodNotAllowed: when the loan product does not accept the method.
    :raises AttemptAlreadyOpen: while another attempt on the loan is unresolved.
    """
    with transaction.atomic(), audit_batch():
        # Lock the payment only: the loan and product are read, and locking them
        # too would make every payment on one product wait for the others.
        payment = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("loan__product")
            .get(pk=payment_id)
        )
        if payment.status not in PAYABLE_STATUSES:
            raise PaymentNotPayable()
        if method_type not in payment.loan.product.allowed_method_types:
            raise MethodNotAllowed()
        try:
            # No existence check first: the partial unique index (one open attempt
            # per loan) decides, also between racing transactions. No savepoint
            # either: a violation aborts this whole block, which raises anyway.
            with transaction.atomic(savepoint=False):
                attempt = _new_attempt(payment, channel, method_type, now)
                attempt.save(force_insert=True)
        except IntegrityError as exc:
            raise AttemptAlreadyOpen() from exc
        events: list[PaymentEvent] = []
        _record_opened(payment, attempt, now=now, events=events)
        PaymentEvent.objects.bulk_create(events)
    return attempt


@dataclass(frozen=True)
class NewPayment:
    """One payment :func:`payments_open_many` creates: for this loan, this much."""

    loan: Loan
    amount: Decimal
    idempotency_key: str


def payments_open_many(
    orders: Sequence[NewPayment],
    *,
    channel: Channel,
    method_type: PaymentMethodType,
    initiated_by: Initiator,
    now: datetime,
) -> list[PaymentAttempt]:
    """:func:`payment_create` and then :func:`attempt_open` for each order, written
    set-wise: one INSERT for the payments, one for the attempts, one for their
    timeline; each payment's move to processing and its notice are recorded as
    attempt_open records them (deferred by the caller's ``updates_deferred`` and
    ``notices_held`` when it holds them). For new payments only, in the caller's
    transaction, which anything raised here spoils: the caller rolls back and
    goes one by one, where each order gets its own answer.

    Each loan's product and schedule should be loaded (``select_related`` and
    ``prefetch_related``): they are read per order.

    :raises IntegrityError: for a used idempotency key or an attempt already open.
    :raises LoanNotRepayable, MethodNotAllowed: as the one-by-one functions would.
    """
    for order in orders:
        if order.loan.status != LoanStatus.ACTIVE:
            raise LoanNotRepayable()
        if method_type not in order.loan.product.allowed_method_types:
            raise MethodNotAllowed()
    purpose = PaymentPurpose.INSTALLMENT
    with transaction.atomic(savepoint=False), audit_batch():
        payments = Payment.objects.bulk_create(
            [
                Payment(
                    loan=order.loan,
                    borrower_id=order.loan.borrower_id,
                    amount=(value := parse_amount(order.amount)),
                    purpose=purpose,
                    initiated_by=initiated_by,
                    idempotency_key=order.idempotency_key,
                    request_fingerprint=_fingerprint(
                        loan=order.loan, amount=value, purpose=purpose, quote=None
                    ),
                    created_at=now,
                    updated_at=now,
                )
                for order in orders
            ]
        )
        attempts = PaymentAttempt.objects.bulk_create(
            [_new_attempt(payment, channel, method_type, now) for payment in payments]
        )
        events: list[PaymentEvent] = []
        for payment, attempt in zip(payments, attempts, strict=True):
            _record_created(payment, now=now, actor=None, events=events)
            _record_opened(payment, attempt, now=now, events=events)
        PaymentEvent.objects.bulk_create(events)
    return attempts


def _new_attempt(
    payment: Payment, channel: Channel, method_type: PaymentMethodType, now: datetime
) -> PaymentAttempt:
    """A fresh (unsaved) attempt with a merchant order number never used before."""
    return PaymentAttempt(
        payment=payment,
        loan_id=payment.loan_id,
        channel=channel,
        method_type=method_type,
        out_trade_no=f"AX{now:%Y%m%d}{secrets.token_hex(10).upper()}",
        amount=payment.amount,
        next_query_at=first_query_at(now),
        created_at=now,
        updated_at=now,
    )


def _record_created(
    payment: Payment, *, now: datetime, actor: User | None, events: list[PaymentEvent]
) -> None:
    """The timeline event (to ``events``) and audit entry of a payment just created."""
    events.append(
        timeline_event(
            payment=payment,
            kind=EventKind.CREATED,
            summary=f"{payment.purpose} payment of {payment.amount} created by "
            f"{payment.initiated_by}",
            now=now,
            to_status=PaymentStatus.CREATED,
        )
    )
    audit_append(
        action="payment.created",
        object_type="payment",
        object_id=payment.public_id,
        now=now,
        actor=actor,
        data={
            "loan": payment.loan.contract_number,
            "amount": str(payment.amount),
            "purpose": payment.purpose,
        },
    )


def _record_opened(
    payment: Payment, attempt: PaymentAttempt, *, now: datetime, events: list[PaymentEvent]
) -> None:
    """Move the payment to processing (if not there yet) for an attempt just opened,
    and its request event; events go to ``events``."""
    if payment.status != PaymentStatus.PROCESSING:
        _move_payment(payment, PaymentStatus.PROCESSING, now=now, attempt=attempt, events=events)
    events.append(
        timeline_event(
            payment=payment,
            attempt=attempt,
            kind=EventKind.REQUEST,
            summary=f"order {attempt.out_trade_no} opened with {attempt.channel} "
            f"({attempt.method_type})",
            now=now,
            to_status=AttemptStatus.SUBMITTING,
        )
    )


@dataclass(frozen=True)
class Outcome:
    """What the channel said about an attempt."""

    status: AttemptStatus
    source: EventKind  # REQUEST (synchronous answer), CALLBACK, POLL or SETTLEMENT
    accepted_at: datetime | None = None
    channel_trade_no: str = ""
    failure_code: str = ""
    failure_message: str = ""
    # Where the result came from (callback row, statement line): kept on the timeline.
    evidence: Mapping[str, Any] = field(default_factory=dict)


def attempt_record_outcome(
    *, attempt_id: int, outcome: Outcome, now: datetime, payment_id: int | None = None
) -> PaymentAttempt:
    """Apply a channel result to an attempt and its payment, exactly once.

    Duplicates are recorded and change nothing; a failure after success is
    recorded and ignored (rule 2); a success after failure or closing makes
    the payment succeeded and books it. ``payment_id``, when the caller knows
    it, saves a read.

    :raises IllegalTransition: for a result the state machine cannot accept.
    """
    with transaction.atomic(), audit_batch():
        payment, attempt = attempt_lock(attempt_id=attempt_id, payment_id=payment_id)
        return attempt_apply_locked(payment=payment, attempt=attempt, outcome=outcome, now=now)


def attempt_lock(
    *, attempt_id: int, payment_id: int | None = None
) -> tuple[Payment, PaymentAttempt]:
    """Lock an attempt and its payment for the caller's transaction.

    Lock order everywhere: payment, then attempt. Pass ``payment_id`` when it is
    known (an attempt never changes payment) to save a read.
    """
    if payment_id is None:
        payment_id = PaymentAttempt.objects.values_list("payment_id", flat=True).get(pk=attempt_id)
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
    attempt.payment = payment  # later reads of attempt.payment need no query
    return payment, attempt


def attempts_lock(
    pairs: Collection[tuple[int, int]],
) -> dict[int, tuple[Payment, PaymentAttempt]]:
    """Lock several (attempt id, payment id) pairs at once; by attempt id.

    Same order as :func:`attempt_lock` (payments, then attempts), each set in id
    order, so two workers locking overlapping sets wait rather than deadlock.
    """
    payments = Payment.objects.select_for_update().filter(pk__in=sorted({p for _, p in pairs}))
    by_id = {payment.pk: payment for payment in payments.order_by("pk")}
    attempts = PaymentAttempt.objects.select_for_update().filter(pk__in=sorted(a for a, _ in pairs))
    locked = {}
    for attempt in attempts.order_by("pk"):
        attempt.payment = by_id[attempt.payment_id]
        locked[attempt.pk] = (attempt.payment, attempt)
    return locked


@contextmanager
def outcomes_applied_together(reports: Iterable[tuple[Payment, str]]) -> Iterator[None]:
    """For many outcomes applied in one transaction to rows locked with
    :func:`attempts_lock` (a batch of callbacks, query answers or bank answers);
    ``reports``: each locked payment with the status reported for its attempt.

    The loans a success in the batch may book are locked with their installments at
    once, their open "paid but not shown" cases read at once, and every row the batch
    changes is written once, together, when the block ends: updates
    (``write_behind``), allocations and notices. Inside, read the rows only from the
    locked instances. If the block raises, nothing held is written.
    """
    booking = {
        payment.loan_id
        for payment, reported in reports
        if reported == AttemptStatus.SUCCEEDED and payment.status != PaymentStatus.SUCCEEDED
    }
    with (
        loans_prelocked(booking),
        open_cases_checked(booking),
        updates_deferred(),
        notices_held(),
    ):
        yield


def attempt_apply_locked(
    *,
    payment: Payment,
    attempt: PaymentAttempt,
    outcome: Outcome,
    now: datetime,
    timeline: list[PaymentEvent] | None = None,
) -> PaymentAttempt:
    """Apply ``outcome`` to rows the caller locked with :func:`attempt_lock`.

    Runs in the caller's transaction without a savepoint of its own: every check
    comes before the first write, so a caller may catch the error and go on.
    The timeline events are written at the end, or, given ``timeline``, added to
    it for the caller to write later in the same transaction (a batch writes all
    of its events in one statement).

    :raises IllegalTransition: before anything is written.
    """
    events: list[PaymentEvent] = []
    if _is_ignorable(attempt, outcome):
        events.append(_ignored_event(payment, attempt, outcome, now))
    else:
        attempt_outcome_check(payment=payment, attempt=attempt, outcome=outcome)
        previous = attempt.status
        _apply_outcome(attempt, outcome, now)
        events.append(
            timeline_event(
                payment=payment,
                attempt=attempt,
                kind=outcome.source,
                summary=f"{attempt.channel} says {outcome.status}"
                + (f" ({outcome.failure_code})" if outcome.failure_code else ""),
                now=now,
                from_status=previous,
                to_status=outcome.status,
                data={"channel_trade_no": outcome.channel_trade_no, **outcome.evidence},
            )
        )
        _follow_attempt(payment, attempt, now=now, events=events)
    if timeline is not None:
        timeline.extend(events)
    else:
        PaymentEvent.objects.bulk_create(events)
    return attempt


def attempt_outcome_check(*, payment: Payment, attempt: PaymentAttempt, outcome: Outcome) -> None:
    """Check that the state machine accepts ``outcome`` for the attempt and its payment.

    :raises IllegalTransition: when it does not.
    """
    if _is_ignorable(attempt, outcome):
        return
    check_attempt_transition(attempt.status, outcome.status)
    target = _payment_target(payment, outcome.status)
    if target is not None:
        check_payment_transition(payment.status, target)


def _payment_target(payment: Payment, reported: str) -> PaymentStatus | None:
    """Where the payment moves when its attempt reaches ``reported`` (None: it stays)."""
    if reported == AttemptStatus.SUCCEEDED:
        return None if payment.status == PaymentStatus.SUCCEEDED else PaymentStatus.SUCCEEDED
    if reported in NOT_PAID_OUTCOMES and payment.status == PaymentStatus.PROCESSING:
        return PaymentStatus.FAILED
    return None


def _is_ignorable(attempt: PaymentAttempt, outcome: Outcome) -> bool:
    if outcome.status == attempt.status:
        return True  # duplicate delivery
    final_unpaid = attempt.status in NOT_PAID_OUTCOMES and outcome.status != AttemptStatus.SUCCEEDED
    return attempt.status == AttemptStatus.SUCCEEDED or final_unpaid


def _ignored_event(
    payment: Payment, attempt: PaymentAttempt, outcome: Outcome, now: datetime
) -> PaymentEvent:
    return timeline_event(
        payment=payment,
        attempt=attempt,
        kind=EventKind.IGNORED,
        summary=f"{outcome.source} said {outcome.status} while the attempt is {attempt.status}",
        now=now,
        from_status=attempt.status,
        to_status=attempt.status,
        data={"reported": outcome.status, "source": outcome.source, **outcome.evidence},
    )


def _apply_outcome(attempt: PaymentAttempt, outcome: Outcome, now: datetime) -> None:
    attempt.status = outcome.status
    attempt.channel_trade_no = outcome.channel_trade_no or attempt.channel_trade_no
    if outcome.status == AttemptStatus.SUCCEEDED:
        attempt.accepted_at = outcome.accepted_at or now
    attempt.failure_code = outcome.failure_code[:64]
    attempt.failure_message = outcome.failure_message[:200]
    attempt.updated_at = now
    if outcome.status not in OPEN_ATTEMPT_STATUSES:
        attempt.next_query_at = None  # nothing left for the janitor to ask
    save_fields(
        attempt,
        [
            "status",
            "channel_trade_no",
            "accepted_at",
            "failure_code",
            "failure_message",
            "next_query_at",
            "updated_at",
        ],
    )


_PAYMENT_STATE_FIELDS = ["status", "updated_at", "value_at", "succeeded_at", "failure_reason"]


def _follow_attempt(
    payment: Payment, attempt: PaymentAttempt, *, now: datetime, events: list[PaymentEvent]
) -> None:
    """Move the payment as its attempt moved."""
    if attempt.status == AttemptStatus.SUCCEEDED:
        if payment.status == PaymentStatus.SUCCEEDED:
            # A second attempt also took money: keep one, the other must be refunded.
            events.append(
                timeline_event(
                    payment=payment,
                    attempt=attempt,
                    kind=EventKind.NOTE,
                    summary=f"duplicate success on {attempt.out_trade_no}: refund required",
                    now=now,
                    data={"refund_required": attempt.out_trade_no},
                )
            )
            return
        late = payment.status in (PaymentStatus.FAILED, PaymentStatus.CANCELLED)
        # Set when (and only when) the payment failed, kept until now: so only then
        # can a failure notice exist that the success notice must correct.
        failed_before = bool(payment.failure_reason)
        payment.value_at = attempt.accepted_at
        payment.succeeded_at = now
        payment.failure_reason = ""
        _move_payment(
            payment, PaymentStatus.SUCCEEDED, now=now, attempt=attempt, late=late, events=events
        )
        # Booked in the same transaction; the payment row is written once for both.
        payment_book(payment=payment, now=now, events=events)
        save_fields(payment, _PAYMENT_STATE_FIELDS + list(BOOKING_FIELDS))
        # After booking, so the notice can say which installments were paid.
        payment_notices_on_change(
            payment,
            PaymentStatus.SUCCEEDED,
            attempt=attempt,
            now=now,
            failure_notices_possible=failed_before,
        )
    elif attempt.status in NOT_PAID_OUTCOMES and payment.status == PaymentStatus.PROCESSING:
        payment.failure_reason = attempt.failure_message or attempt.failure_code or attempt.status
        _move_payment(payment, PaymentStatus.FAILED, now=now, attempt=attempt, events=events)


def _move_payment(
    payment: Payment,
    target: PaymentStatus,
    *,
    now: datetime,
    events: list[PaymentEvent],
    attempt: PaymentAttempt | None = None,
    late: bool = False,
) -> None:
    """Move the payment to ``target``: its timeline event goes to ``events``; a
    success is saved by the caller together with its booking."""
    previous = payment.status
    check_payment_transition(previous, target)
    payment.status = target
    payment.updated_at = now
    if target != PaymentStatus.SUCCEEDED:
        save_fields(payment, _PAYMENT_STATE_FIELDS)
    data = {"late_success": True} if late else {}
    summary = f"payment {previous} -> {target}" + (" (late success: money arrived)" if late else "")
    events.append(
        timeline_event(
            payment=payment,
            attempt=attempt,
            kind=EventKind.STATE_CHANGE,
            summary=summary,
            now=now,
            from_status=previous,
            to_status=target,
            data=data,
        )
    )
    audit_append(
        action=f"payment.{target}",
        object_type="payment",
        object_id=payment.public_id,
        now=now,
        data={"from": previous, **data},
    )
    if target != PaymentStatus.SUCCEEDED:  # success is announced once it is booked
        payment_notices_on_change(payment, target, attempt=attempt, now=now)


def payment_cancel(*, payment_id: int, now: datetime, actor: User | None = None) -> Payment:
    """Cancel a payment that has no attempt in flight.

    :raises AttemptAlreadyOpen: while an attempt could still take money.
    :raises IllegalTransition: when the payment is already final.
    """
    with transaction.atomic(), audit_batch():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.attempts.filter(status__in=OPEN_ATTEMPT_STATUSES).exists():
            raise AttemptAlreadyOpen()
        events: list[PaymentEvent] = []
        _move_payment(payment, PaymentStatus.CANCELLED, now=now, events=events)
        PaymentEvent.objects.bulk_create(events)
    return payment
