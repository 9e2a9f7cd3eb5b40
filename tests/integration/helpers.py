"""Driving payments through the real services, as a channel would."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from repayments.domain.states import AttemptStatus
from repayments.models import (
    BoundCard,
    Channel,
    EventKind,
    Loan,
    Payment,
    PaymentAttempt,
    PaymentMethodType,
    User,
)
from repayments.services.payments import (
    Outcome,
    attempt_open,
    attempt_record_outcome,
    payment_create,
)


def open_attempt(
    loan: Loan, amount: Decimal | str, when: datetime, *, key: str | None = None
) -> tuple[Payment, PaymentAttempt]:
    payment = payment_create(loan=loan, amount=amount, now=when, idempotency_key=key)
    attempt = attempt_open(
        payment_id=payment.pk,
        channel=Channel.UNIONPAY,
        method_type=PaymentMethodType.BANK_DEBIT_CARD,
        now=when,
    )
    return payment, attempt


def report(
    attempt: PaymentAttempt,
    status: AttemptStatus,
    when: datetime,
    *,
    accepted_at: datetime | None = None,
    source: EventKind = EventKind.CALLBACK,
) -> PaymentAttempt:
    outcome = Outcome(
        status=status,
        source=source,
        accepted_at=accepted_at or (when if status == AttemptStatus.SUCCEEDED else None),
        failure_code="" if status == AttemptStatus.SUCCEEDED else "INSUFFICIENT_FUNDS",
    )
    return attempt_record_outcome(attempt_id=attempt.pk, outcome=outcome, now=when)


def pay(loan: Loan, amount: Decimal | str, when: datetime, **kwargs: object) -> Payment:
    payment, attempt = open_attempt(loan, amount, when)
    report(attempt, AttemptStatus.SUCCEEDED, when, **kwargs)  # type: ignore[arg-type]
    payment.refresh_from_db()
    return payment


def retry_with_alipay(payment: Payment, when: datetime) -> PaymentAttempt:
    """Open a further attempt on ``payment`` through Alipay (a fallback or a retry)."""
    return attempt_open(
        payment_id=payment.pk,
        channel=Channel.ALIPAY,
        method_type=PaymentMethodType.ALIPAY_BALANCE,
        now=when,
    )


def bind_debit_card(
    borrower: User, token: str, *, is_credit: bool = False, priority: int = 1, last4: str = "0000"
) -> BoundCard:
    """A UnionPay card bound for withholding, as the due-day batch finds it."""
    return BoundCard.objects.create(
        borrower=borrower,
        channel=Channel.UNIONPAY,
        card_token=token,
        card_masked=f"6222 **** **** {last4}",
        bank_name="ICBC",
        is_credit=is_credit,
        priority=priority,
    )
