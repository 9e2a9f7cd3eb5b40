"""Early-settlement quotes, computed by the engine that will book the payment."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from repayments.domain.errors import DomainError
from repayments.domain.money import ZERO
from repayments.models import Installment, Loan, LoanStatus, SettlementQuote, SettlementQuoteLine
from repayments.services.allocation import accrue_penalties, settlement_dues_for
from repayments.services.audit import audit_append
from repayments.services.errors import LoanNotRepayable


class InvalidSettlementDate(DomainError):
    """The settlement date must be today or later, and before the last installment is due."""

    code = "invalid_settlement_date"


def settlement_quote_create(*, loan: Loan, settlement_date: date, now: datetime) -> SettlementQuote:
    """Compute and store what settling ``loan`` on ``settlement_date`` costs.

    The quote stays valid until the end of the settlement date or for
    SETTLEMENT_QUOTE_VALID_HOURS, whichever comes first.

    :raises LoanNotRepayable: when the loan is already settled.
    :raises InvalidSettlementDate: for a past date or one after the final due date.
    :raises NothingToSettle: when nothing is outstanding.
    """
    if loan.status != LoanStatus.ACTIVE:
        raise LoanNotRepayable()
    installments = list(Installment.objects.filter(loan=loan).order_by("number"))
    today = timezone.localdate(now)
    if settlement_date < today or settlement_date > installments[-1].due_date:
        raise InvalidSettlementDate()
    accrue_penalties(loan, installments, as_of=settlement_date)  # in memory only
    dues = settlement_dues_for(loan, installments, settlement_date)
    gross = sum((d.amount for d in dues), ZERO)
    credit = min(loan.credit_balance, gross)
    end_of_day = timezone.make_aware(datetime.combine(settlement_date, time.max))
    valid_until = min(end_of_day, now + timedelta(hours=settings.SETTLEMENT_QUOTE_VALID_HOURS))
    with transaction.atomic():
        quote = SettlementQuote.objects.create(
            loan=loan,
            settlement_date=settlement_date,
            gross_total=gross,
            credit_applied=credit,
            total=gross - credit,
            computed_at=now,
            valid_until=valid_until,
        )
        SettlementQuoteLine.objects.bulk_create(
            SettlementQuoteLine(
                quote=quote,
                installment_id=due.installment_id,
                component=due.component,
                amount=due.amount,
                position=position,
            )
            for position, due in enumerate(dues)
        )
        audit_append(
            action="settlement_quote.created",
            object_type="loan",
            object_id=loan.pk,
            now=now,
            data={
                "quote": str(quote.public_id),
                "total": str(quote.total),
                "date": str(settlement_date),
            },
        )
    return quote
