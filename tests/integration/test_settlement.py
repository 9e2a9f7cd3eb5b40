"""Early settlement: the quote is exactly what booking it does (rules 3, 6)."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import translation

from repayments.domain.states import AttemptStatus
from repayments.models import Allocation, Channel, LoanStatus, PaymentMethodType
from repayments.services.errors import QuoteNotUsable
from repayments.services.payments import attempt_open, payment_create
from repayments.services.settlement import InvalidSettlementDate, settlement_quote_create
from tests.conftest import at
from tests.integration.helpers import pay, report

pytestmark = pytest.mark.django_db


def english_breakdown(quote):
    with translation.override("en"):
        return dict(quote.breakdown())


def _three_paid(make_loan):
    loan = make_loan(principal="100000.00", annual_rate_percent=Decimal("6.0000"), term_months=12)
    for number in (1, 2, 3):
        due = loan.installments.get(number=number).due_date
        pay(loan, "8606.64", at(due))
    return loan


def test_quote_breakdown_is_explained_and_exact(make_loan) -> None:
    loan = _three_paid(make_loan)
    settle_on = date(2026, 4, 20)  # 15 days into the period that started on 5 April
    quote = settlement_quote_create(loan=loan, settlement_date=settle_on, now=at(settle_on, 9))
    principal = sum(i.principal_due - i.principal_paid for i in loan.installments.all())
    labels = english_breakdown(quote)
    assert labels["Outstanding principal"] == principal
    # Interest for 15 days at 6%/360 on the outstanding principal.
    assert labels["Interest to the settlement date"] == (
        principal * Decimal("0.06") / 360 * 15
    ).quantize(Decimal("0.01"))
    assert labels["Early-settlement fee"] == (principal * Decimal("0.02")).quantize(Decimal("0.01"))
    assert quote.total == sum(labels.values())
    assert quote.valid_until <= at(settle_on, 23, 59) + timedelta(minutes=1)


def test_paying_the_quote_settles_the_loan_exactly(make_loan) -> None:
    loan = _three_paid(make_loan)
    settle_on = date(2026, 4, 20)
    quote = settlement_quote_create(loan=loan, settlement_date=settle_on, now=at(settle_on, 9))
    payment = payment_create(loan=loan, amount=quote.total, quote=quote, now=at(settle_on, 9))
    attempt = attempt_open(
        payment_id=payment.pk,
        channel=Channel.ALIPAY,
        method_type=PaymentMethodType.ALIPAY_BALANCE,
        now=at(settle_on, 9),
    )
    report(attempt, AttemptStatus.SUCCEEDED, at(settle_on, 9, 5))
    loan.refresh_from_db()
    assert loan.status == LoanStatus.SETTLED_EARLY
    assert loan.settled_date == settle_on
    booked = sorted(
        (a.installment_id or 0, a.component, a.amount)
        for a in Allocation.objects.filter(payment=payment)
    )
    quoted = sorted(
        (line.installment_id or 0, line.component, line.amount) for line in quote.lines.all()
    )
    assert booked == quoted
    assert all(i.is_paid for i in loan.installments.all())
    assert loan.credit_balance == Decimal("0.00")


def test_quote_uses_credit_balance(make_loan) -> None:
    loan = _three_paid(make_loan)
    due4 = loan.installments.get(number=4).due_date
    # Installment 4 is due and 5 is next; anything beyond both becomes credit.
    pay(loan, "18000.00", at(due4))
    loan.refresh_from_db()
    assert loan.credit_balance == Decimal("786.72")
    quote = settlement_quote_create(
        loan=loan, settlement_date=due4 + timedelta(days=3), now=at(due4, 12)
    )
    assert quote.credit_applied == Decimal("786.72")
    assert quote.total == quote.gross_total - Decimal("786.72")


def test_expired_or_mismatched_quote_is_refused(make_loan) -> None:
    loan = _three_paid(make_loan)
    settle_on = date(2026, 4, 20)
    quote = settlement_quote_create(loan=loan, settlement_date=settle_on, now=at(settle_on, 9))
    with pytest.raises(QuoteNotUsable):
        payment_create(
            loan=loan, amount=quote.total, quote=quote, now=at(settle_on + timedelta(days=1))
        )
    with pytest.raises(QuoteNotUsable):
        payment_create(loan=loan, amount=quote.total - 1, quote=quote, now=at(settle_on, 10))


def test_settlement_date_in_the_past_is_refused(make_loan) -> None:
    loan = _three_paid(make_loan)
    with pytest.raises(InvalidSettlementDate):
        settlement_quote_create(
            loan=loan, settlement_date=date(2026, 5, 1), now=at(date(2026, 5, 2))
        )


def test_overdue_installment_with_penalty_in_quote(make_loan) -> None:
    loan = _three_paid(make_loan)
    due4 = loan.installments.get(number=4).due_date
    settle_on = due4 + timedelta(days=10)
    quote = settlement_quote_create(loan=loan, settlement_date=settle_on, now=at(settle_on, 9))
    labels = english_breakdown(quote)
    assert labels["Late penalties"] == Decimal("43.03")  # 10 days x 0.05% x 8,606.64
    assert quote.total == sum(labels.values())
