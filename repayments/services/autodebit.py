"""Withholding on the due date: schedule, claim, debit, retry declines within the day.

A declined debit (known: no money moved) is retried on a backoff, moving to the
borrower's next bound card. A debit whose outcome is unknown or still pending is
handed to status sync and never retried here: retrying it could charge twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from notifications.services import notices_held
from repayments.domain.errors import DomainError
from repayments.domain.states import (
    OPEN_ATTEMPT_STATUSES,
    AttemptStatus,
    IllegalTransition,
    PaymentStatus,
)
from repayments.models import (
    BoundCard,
    Channel,
    DebitStatus,
    Initiator,
    Installment,
    LoanStatus,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
    ScheduledDebit,
)
from repayments.services.audit import audit_batch
from repayments.services.errors import (
    AttemptAlreadyOpen,
    IdempotencyKeyReused,
    MethodNotAllowed,
    PaymentNotPayable,
)
from repayments.services.methods import METHOD_CHANNEL
from repayments.services.payments import (
    NewPayment,
    Outcome,
    attempt_apply_locked,
    attempt_record_outcome,
    attempts_lock,
    outcomes_applied_together,
    payment_create,
    payments_open_many,
)
from repayments.services.routing import (
    ChannelFactory,
    attempts_send_batch,
    default_channel,
    payment_start,
)
from repayments.services.write_behind import updates_deferred

RETRY_BACKOFF = (timedelta(minutes=30), timedelta(hours=2), timedelta(hours=4))
# No debit is started after this local hour: a bank statement line at midnight
# confuses borrowers, and the day's last retry must finish the same day.
LAST_START_HOUR = 21


def auto_debit_schedule(*, run_date: date, now: datetime) -> int:
    """Create the day's debit rows for unpaid installments due that day (idempotent)."""
    start_at = timezone.make_aware(datetime.combine(run_date, time(settings.AUTO_DEBIT_HOUR)))
    due = Installment.objects.filter(
        due_date=run_date,
        paid_value_date__isnull=True,
        loan__status=LoanStatus.ACTIVE,
        loan__borrower__bound_cards__is_active=True,
    ).distinct()
    rows = [
        ScheduledDebit(
            installment_id=installment_id,
            loan_id=loan_id,
            run_date=run_date,
            next_try_at=start_at,
            updated_at=now,
        )
        for installment_id, loan_id in due.values_list("pk", "loan_id")
    ]
    # ignore_conflicts hands back every object, inserted or not: count rows instead.
    before = ScheduledDebit.objects.filter(run_date=run_date).count()
    ScheduledDebit.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    return ScheduledDebit.objects.filter(run_date=run_date).count() - before


def auto_debit_claim(*, now: datetime, limit: int = 500) -> list[int]:
    """Take up to ``limit`` due rows for this worker; concurrent claimers skip locked rows."""
    with transaction.atomic():
        ids = list(
            ScheduledDebit.objects.select_for_update(skip_locked=True)
            .filter(status=DebitStatus.WAITING, next_try_at__lte=now)
            .order_by("next_try_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        ScheduledDebit.objects.filter(pk__in=ids).update(
            status=DebitStatus.IN_FLIGHT, updated_at=now
        )
    return ids


# Reads shared by the debits of one batch are taken this many rows at a time, so
# that what a debit is decided on (cards, attempts in progress) is seconds old at most.
SHARED_READ_CHUNK = 200


@dataclass(frozen=True)
class _Prefetched:
    """What several debits of one batch need, read in one query each."""

    cards: Mapping[int, list[BoundCard]]  # usable cards by borrower id
    busy_loans: frozenset[int]  # loans with an attempt in progress
    # Rows whose current try already made its payment (by row id): a redelivery or a
    # recovered row, decided alone from what that try did.
    tries_made: frozenset[int] = frozenset()


def auto_debit_execute(
    *, debit_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> ScheduledDebit:
    """Send one claimed debit through the borrower's bound card and record what happened."""
    debit = ScheduledDebit.objects.select_related("installment", "loan").get(pk=debit_id)
    return _execute(debit, now, channels, None)


def auto_debit_execute_many(
    *, debit_ids: Sequence[int], now: datetime, channels: ChannelFactory = default_channel
) -> list[ScheduledDebit]:
    """:func:`auto_debit_execute` for each claimed row, in id order, with the reads
    the rows share (the rows, their cards, loans already paying) done per chunk."""
    done: list[ScheduledDebit] = []
    ordered = sorted(debit_ids)
    for start in range(0, len(ordered), SHARED_READ_CHUNK):
        chunk = ordered[start : start + SHARED_READ_CHUNK]
        debits = list(
            ScheduledDebit.objects.select_related("installment", "loan__product")
            .filter(pk__in=chunk)
            .order_by("pk")
        )
        known = _prefetch([d for d in debits if d.status == DebitStatus.IN_FLIGHT], now)
        ready: list[tuple[ScheduledDebit, BoundCard]] = []
        for debit in debits:
            card = _first_try_card(debit, known)
            if card is None:
                done.append(_execute(debit, now, channels, known))
            else:
                ready.append((debit, card))
        done.extend(_send_together(ready, now, channels, known))
    return sorted(done, key=lambda debit: debit.pk)


def _first_try_card(debit: ScheduledDebit, known: _Prefetched) -> BoundCard | None:
    """The card a row is sent to together with others, or None when the row has
    anything to decide first (a try that may have reached the bank, nothing owed,
    no card, the borrower paying right now): those go through :func:`_execute`.
    A row retried after a decline still points at the declined try's payment; its
    new try has none yet, so it goes with the others."""
    if debit.status != DebitStatus.IN_FLIGHT or debit.pk in known.tries_made:
        return None
    if _owed(debit) <= 0 or debit.loan.status != LoanStatus.ACTIVE:
        return None
    cards = known.cards.get(debit.loan.borrower_id, [])
    if not cards or debit.loan_id in known.busy_loans:
        return None
    return cards[debit.card_index % len(cards)]


def _send_together(
    ready: Sequence[tuple[ScheduledDebit, BoundCard]],
    now: datetime,
    channels: ChannelFactory,
    known: _Prefetched,
) -> list[ScheduledDebit]:
    """Open every row's payment and attempt in one transaction, send them to the bank
    (as one batch file where the channel takes them), then record the answers in one
    transaction: the steps of :func:`_execute`, with two commits and two audit-chain
    writes for the lot instead of three of each per row."""
    if not ready:
        return []
    try:
        attempts = _open_together(ready, now)
    except (DomainError, IntegrityError):
        # A row that cannot be opened with the others (its borrower started paying, a
        # product refuses card debits...) rolled the lot back: each row decides alone.
        return [_execute(debit, now, channels, known) for debit, _ in ready]
    outcomes = attempts_send_batch(
        [(attempt, card.card_token) for (_, card), attempt in zip(ready, attempts, strict=True)],
        now=now,
        channels=channels,
    )
    recorded = _record_together(attempts, outcomes, now)
    done: list[ScheduledDebit] = []
    settled: dict[DebitStatus, list[ScheduledDebit]] = {}
    for (debit, _), attempt in zip(ready, recorded, strict=True):
        debit.payment = attempt.payment  # as the answer left it
        if attempt.status == AttemptStatus.FAILED:
            done.append(_after_attempt(debit, attempt, now))  # a retry to schedule
        else:
            status = _settled_status(attempt)
            debit.status, debit.updated_at = status, now
            settled.setdefault(status, []).append(debit)
    # What _finish would write row by row, one UPDATE per outcome.
    for status, debits in settled.items():
        ScheduledDebit.objects.filter(pk__in=[d.pk for d in debits]).update(
            status=status, updated_at=now
        )
        done.extend(debits)
    return done


def _open_together(
    ready: Sequence[tuple[ScheduledDebit, BoundCard]], now: datetime
) -> list[PaymentAttempt]:
    """Create the rows' payments and open their attempts, and remember each payment on
    its row, all committed before anything is sent (a crash after it is recoverable)."""
    # The notices read each loan's schedule: one query for the lot.
    prefetch_related_objects([debit.loan for debit, _ in ready], "installments")
    # Each payment's move to processing and its notice are written with the others
    # when the block ends; nothing here reads them back (each row's payment is new).
    with transaction.atomic(), audit_batch(), updates_deferred(), notices_held():
        attempts = payments_open_many(
            [NewPayment(debit.loan, _owed(debit), _try_key(debit)) for debit, _ in ready],
            channel=METHOD_CHANNEL[PaymentMethodType.BANK_DEBIT_CARD],
            method_type=PaymentMethodType.BANK_DEBIT_CARD,
            initiated_by=Initiator.AUTO_DEBIT,
            now=now,
        )
        for (debit, _), attempt in zip(ready, attempts, strict=True):
            debit.payment = attempt.payment
        ScheduledDebit.objects.bulk_update([debit for debit, _ in ready], ["payment"])
    return attempts


def _record_together(
    attempts: Sequence[PaymentAttempt], outcomes: Sequence[Outcome], now: datetime
) -> list[PaymentAttempt]:
    """Record the bank's answers in one transaction. One the state machine refuses
    (nothing is written for it) is recorded alone afterwards, raising as it would
    from payment_start."""
    recorded: list[PaymentAttempt | None] = []
    timeline: list[PaymentEvent] = []
    with transaction.atomic(), audit_batch():
        locked_by_id = attempts_lock({(a.pk, a.payment_id) for a in attempts})
        pairs = [locked_by_id[a.pk] for a in attempts]
        reports = [
            (payment, outcome.status) for (payment, _), outcome in zip(pairs, outcomes, strict=True)
        ]
        with outcomes_applied_together(reports):
            for (payment, locked), outcome in zip(pairs, outcomes, strict=True):
                try:
                    recorded.append(
                        attempt_apply_locked(
                            payment=payment,
                            attempt=locked,
                            outcome=outcome,
                            now=now,
                            timeline=timeline,
                        )
                    )
                except IllegalTransition:
                    recorded.append(None)
            PaymentEvent.objects.bulk_create(timeline)  # every answer's events at once
    return [
        done
        or attempt_record_outcome(
            attempt_id=attempt.pk, outcome=outcome, now=now, payment_id=attempt.payment_id
        )
        for done, attempt, outcome in zip(recorded, attempts, outcomes, strict=True)
    ]


def _owed(debit: ScheduledDebit) -> Decimal:
    return debit.installment.total_due - debit.installment.total_paid


def _try_key(debit: ScheduledDebit) -> str:
    """The idempotency key of the row's current try: one payment per try, ever."""
    return f"auto-debit:{debit.installment_id}:{debit.run_date}:{debit.tries}"


def _execute(
    debit: ScheduledDebit,
    now: datetime,
    channels: ChannelFactory,
    known: _Prefetched | None,
) -> ScheduledDebit:
    if debit.status != DebitStatus.IN_FLIGHT:
        return debit  # a redelivered task: the first run already did the work
    key = _try_key(debit)
    # The payment is saved on the row before any attempt opens, so a row without
    # one never reached the bank and needs no look-up.
    earlier = _attempt_for_key(debit, key) if debit.payment_id is not None else None
    if earlier is not None:
        # This try already reached the bank (a redelivery or a recovered row): its
        # attempt decides, and the same card is never debited twice for one try.
        return _after_attempt(debit, earlier, now)
    owed = _owed(debit)
    cards = (
        _usable_cards(debit, now) if known is None else known.cards.get(debit.loan.borrower_id, [])
    )
    if owed <= 0 or debit.loan.status != LoanStatus.ACTIVE or not cards:
        return _finish(debit, DebitStatus.SKIPPED, now, "nothing_owed" if owed <= 0 else "no_card")
    # Advisory (the one-open-attempt index decides, see AttemptAlreadyOpen below):
    # it saves creating a payment that could not be sent.
    busy = (
        PaymentAttempt.objects.filter(
            loan_id=debit.loan_id, status__in=OPEN_ATTEMPT_STATUSES
        ).exists()
        if known is None
        else debit.loan_id in known.busy_loans
    )
    if busy:
        return _retry_or_give_up(debit, now, "attempt_in_progress", next_card=False)
    try:
        payment = payment_create(
            loan=debit.loan,
            amount=owed,
            now=now,
            idempotency_key=key,
            initiated_by=Initiator.AUTO_DEBIT,
        )
        # Remember the payment before calling the bank, so a crash here is recoverable.
        debit.payment = payment
        ScheduledDebit.objects.filter(pk=debit.pk).update(payment=payment)
        started = payment_start(
            payment_id=payment.pk,
            method_type=PaymentMethodType.BANK_DEBIT_CARD,
            now=now,
            card_token=cards[debit.card_index % len(cards)].card_token,
            channels=channels,
        )
    except AttemptAlreadyOpen:
        # The borrower started paying between our check and our attempt.
        return _retry_or_give_up(debit, now, "attempt_in_progress", next_card=False)
    except (PaymentNotPayable, MethodNotAllowed, IdempotencyKeyReused) as exc:
        return _finish(debit, DebitStatus.GAVE_UP, now, exc.code)
    return _after_attempt(debit, started.attempt, now)


def _attempt_for_key(debit: ScheduledDebit, key: str) -> PaymentAttempt | None:
    return (
        PaymentAttempt.objects.filter(
            payment__borrower_id=debit.loan.borrower_id, payment__idempotency_key=key
        )
        .order_by("-created_at", "-id")
        .first()
    )


def _after_attempt(debit: ScheduledDebit, attempt: PaymentAttempt, now: datetime) -> ScheduledDebit:
    if attempt.status == AttemptStatus.FAILED:
        # Known not charged: another try, on the next card, is safe.
        return _retry_or_give_up(debit, now, attempt.failure_code, next_card=True)
    return _finish(debit, _settled_status(attempt), now)


def _settled_status(attempt: PaymentAttempt) -> DebitStatus:
    """The row's end for an attempt not known to have failed: done if it succeeded,
    else status sync's to settle (never retried here: it may have charged)."""
    return (
        DebitStatus.SUCCEEDED
        if attempt.status == AttemptStatus.SUCCEEDED
        else DebitStatus.HANDED_OFF
    )


# Everything a run changes on the row besides ``payment`` (saved before the bank call).
_STATE_FIELDS = ["status", "tries", "card_index", "last_failure_code", "updated_at"]


def _retry_or_give_up(
    debit: ScheduledDebit, now: datetime, reason: str, *, next_card: bool
) -> ScheduledDebit:
    debit.tries += 1
    debit.card_index += 1 if next_card else 0
    next_at = now + RETRY_BACKOFF[min(debit.tries, len(RETRY_BACKOFF)) - 1]
    last_start = timezone.make_aware(datetime.combine(debit.run_date, time(LAST_START_HOUR)))
    if debit.tries > len(RETRY_BACKOFF) or next_at > last_start:
        return _finish(debit, DebitStatus.GAVE_UP, now, reason)
    debit.status, debit.next_try_at = DebitStatus.WAITING, next_at
    debit.last_failure_code, debit.updated_at = reason[:64], now
    debit.save(update_fields=[*_STATE_FIELDS, "next_try_at"])
    return debit


def _finish(
    debit: ScheduledDebit, status: DebitStatus, now: datetime, reason: str = ""
) -> ScheduledDebit:
    debit.status, debit.updated_at = status, now
    debit.last_failure_code = reason[:64] or debit.last_failure_code
    debit.save(update_fields=_STATE_FIELDS)
    return debit


def _usable_cards(debit: ScheduledDebit, now: datetime) -> list[BoundCard]:
    return _usable_cards_by_borrower([debit.loan.borrower_id], now).get(debit.loan.borrower_id, [])


def _usable_cards_by_borrower(
    borrower_ids: Iterable[int], now: datetime
) -> dict[int, list[BoundCard]]:
    today = timezone.localdate(now)
    cards: dict[int, list[BoundCard]] = {}
    for card in BoundCard.objects.filter(
        borrower_id__in=set(borrower_ids),
        channel=Channel.UNIONPAY,
        is_active=True,
        is_credit=False,
    ).order_by("priority", "pk"):
        if card.verified_until is None or card.verified_until >= today:
            cards.setdefault(card.borrower_id, []).append(card)
    return cards


def _prefetch(debits: Sequence[ScheduledDebit], now: datetime) -> _Prefetched:
    if not debits:
        return _Prefetched(cards={}, busy_loans=frozenset())
    busy = PaymentAttempt.objects.filter(
        loan_id__in={d.loan_id for d in debits}, status__in=OPEN_ATTEMPT_STATUSES
    ).values_list("loan_id", flat=True)
    # Only a row that has been sent before can have made its current try's payment.
    sent_before = {(d.loan.borrower_id, _try_key(d)): d.pk for d in debits if d.payment_id}
    made = set(
        Payment.objects.filter(
            borrower_id__in={borrower for borrower, _ in sent_before},
            idempotency_key__in={key for _, key in sent_before},
        ).values_list("borrower_id", "idempotency_key")
        if sent_before
        else ()
    )
    return _Prefetched(
        cards=_usable_cards_by_borrower((d.loan.borrower_id for d in debits), now),
        busy_loans=frozenset(busy),
        tries_made=frozenset(pk for try_key, pk in sent_before.items() if try_key in made),
    )


def auto_debit_recover_stale(
    *, now: datetime, older_than: timedelta = timedelta(minutes=15)
) -> int:
    """Give back rows whose worker died after claiming them.

    Safe even if that worker reached the bank: the next run finds the try's
    attempt by its idempotency key and decides from it instead of debiting again.
    """
    return ScheduledDebit.objects.filter(
        status=DebitStatus.IN_FLIGHT, updated_at__lt=now - older_than
    ).update(status=DebitStatus.WAITING, updated_at=now)


def auto_debit_resume_declined(*, now: datetime) -> int:
    """Put back in line the debits the bank declined after accepting them (by notify or
    query): known not charged, so the next card may be tried later today."""
    resumed = 0
    handed_off = ScheduledDebit.objects.filter(
        status=DebitStatus.HANDED_OFF,
        payment__status=PaymentStatus.FAILED,
        run_date=timezone.localdate(now),
    ).select_related("loan")
    for debit in handed_off:
        latest = (
            debit.payment.attempts.order_by("-created_at", "-id").first() if debit.payment else None
        )
        if latest is not None and latest.status == AttemptStatus.FAILED:
            _retry_or_give_up(debit, now, latest.failure_code, next_card=True)
            resumed += 1
    return resumed
