"""Disputes raised by borrowers ("I paid but it does not show", "the amount is wrong")."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from repayments.domain.errors import DomainError
from repayments.models import Dispute, DisputeCategory, Loan, Payment, PaymentAttempt, User
from repayments.services.audit import audit_append
from repayments.services.errors import NotFound

DESCRIPTION_MAX = 2000
TRADE_NO_MAX = 64


class InvalidDispute(DomainError):
    """The dispute is missing something or names a payment of another loan."""

    code = "invalid_dispute"

    def __init__(self, *, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def dispute_open(
    *,
    borrower: User,
    loan: Loan,
    category: str,
    description: str,
    now: datetime,
    payment: Payment | None = None,
    trade_no: str = "",
) -> Dispute:
    """Open a dispute about ``loan``, linked to the payment it concerns when we can tell.

    ``trade_no`` is what the borrower copied from their channel record: our merchant
    order number or the channel's transaction number. When no payment is named, a
    payment of this loan with that number is linked.

    :raises NotFound: when the loan or the payment is not the borrower's.
    :raises InvalidDispute: for an unknown category, an empty or too long text, or a
        payment of another loan.
    """
    if loan.borrower_id != borrower.pk or (payment and payment.borrower_id != borrower.pk):
        raise NotFound()
    text, number = description.strip(), trade_no.strip()
    _check(category=category, text=text, number=number)
    if payment is not None and payment.loan_id != loan.pk:
        raise InvalidDispute(field="payment", message=_("This payment is not on this loan."))
    if payment is None and number:
        payment = _payment_by_trade_no(loan, number)
    with transaction.atomic():
        dispute = Dispute.objects.create(
            borrower=borrower,
            loan=loan,
            payment=payment,
            category=category,
            description=text,
            channel_trade_no=number,
            created_at=now,
            updated_at=now,
        )
        audit_append(
            action="dispute.opened",
            object_type="dispute",
            object_id=dispute.pk,
            now=now,
            actor=borrower,
            data={
                "loan": loan.contract_number,
                "payment": str(payment.public_id) if payment else None,
                "category": category,
                "trade_no": number,
            },
        )
    return dispute


def _check(*, category: str, text: str, number: str) -> None:
    if category not in DisputeCategory.values:
        raise InvalidDispute(field="category", message=_("Choose one of the listed categories."))
    if not text:
        raise InvalidDispute(field="description", message=_("Please describe the problem."))
    if len(text) > DESCRIPTION_MAX:
        raise InvalidDispute(
            field="description",
            message=_("Please keep the description under %(max)s characters.")
            % {"max": DESCRIPTION_MAX},
        )
    if len(number) > TRADE_NO_MAX:
        raise InvalidDispute(
            field="trade_no", message=_("A transaction number has at most 64 characters.")
        )


def _payment_by_trade_no(loan: Loan, number: str) -> Payment | None:
    attempt = (
        PaymentAttempt.objects.filter(loan=loan)
        .filter(Q(out_trade_no=number) | Q(channel_trade_no=number))
        .select_related("payment")
        .order_by("-created_at", "-id")
        .first()
    )
    return attempt.payment if attempt else None
