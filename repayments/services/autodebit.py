"""Withholding on the due date: schedule, claim, debit, retry declines within the day.

A declined debit (known: no money moved) is retried on a backoff, moving to the
borrower's next bound card. A debit whose outcome is unknown or still pending is
handed to status sync and never retried here: retrying it could charge twice.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from repayments.domain.states import OPEN_ATTEMPT_STATUSES, AttemptStatus, PaymentStatus
from repayments.models import (
    BoundCard,
    Channel,
    DebitStatus,
    Initiator,
    Installment,
    LoanStatus,
    PaymentAttempt,
    PaymentMethodType,
    ScheduledDebit,
)
from repayments.services.errors import (
    AttemptAlreadyOpen,
    IdempotencyKeyReused,
    MethodNotAllowed,
    PaymentNotPayable,
)
from repayments.services.payments import payment_create
from repayments.services.routing import ChannelFactory, default_channel, payment_start

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


def auto_debit_execute(
    *, debit_id: int, now: datetime, channels: ChannelFactory = default_channel
) -> ScheduledDebit:
    """Send one claimed debit through the borrower's bound card and record what happened."""
    debit = ScheduledDebit.objects.select_related("installment", "loan").get(pk=debit_id)
    if debit.status != DebitStatus.IN_FLIGHT:
        return debit  # a redelivered task: the first run already did the work
    key = f"auto-debit:{debit.installment_id}:{debit.run_date}:{debit.tries}"
    earlier = _attempt_for_key(debit, key)
    if earlier is not None:
        # This try already reached the bank (a redelivery or a recovered row): its
        # attempt decides, and the same card is never debited twice for one try.
        return _after_attempt(debit, earlier, now)
    owed = debit.installment.total_due - debit.installment.total_paid
    cards = _usable_cards(debit, now)
    if owed <= 0 or debit.loan.status != LoanStatus.ACTIVE or not cards:
        return _finish(debit, DebitStatus.SKIPPED, now, "nothing_owed" if owed <= 0 else "no_card")
    if PaymentAttempt.objects.filter(
        loan_id=debit.loan_id, status__in=OPEN_ATTEMPT_STATUSES
    ).exists():
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
        debit.save(update_fields=["payment"])
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
    if attempt.status == AttemptStatus.SUCCEEDED:
        return _finish(debit, DebitStatus.SUCCEEDED, now)
    if attempt.status == AttemptStatus.FAILED:
        # Known not charged: another try, on the next card, is safe.
        return _retry_or_give_up(debit, now, attempt.failure_code, next_card=True)
    return _finish(debit, DebitStatus.HANDED_OFF, now)


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
    debit.save()
    return debit


def _finish(
    debit: ScheduledDebit, status: DebitStatus, now: datetime, reason: str = ""
) -> ScheduledDebit:
    debit.status, debit.updated_at = status, now
    debit.last_failure_code = reason[:64] or debit.last_failure_code
    debit.save()
    return debit


def _usable_cards(debit: ScheduledDebit, now: datetime) -> list[BoundCard]:
    today = timezone.localdate(now)
    return [
        card
        for card in BoundCard.objects.filter(
            borrower_id=debit.loan.borrower_id,
            channel=Channel.UNIONPAY,
            is_active=True,
            is_credit=False,
        ).order_by("priority", "pk")
        if card.verified_until is None or card.verified_until >= today
    ]


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
