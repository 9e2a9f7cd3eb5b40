"""Receipts for succeeded payments: what was paid, to which installments, through whom.

One function assembles the receipt from the payment as booked (its allocations, its
succeeded attempt, the loan); the printable page and the PDF both render this, so
they can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from repayments.domain.allocation import Component
from repayments.domain.money import ZERO
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import BoundCard, Channel, Payment, PaymentMethodType, PaymentPurpose

COMPONENT_WORDS = {
    Component.PRINCIPAL: gettext_lazy("Principal"),
    Component.INTEREST: gettext_lazy("Interest"),
    Component.FEE: gettext_lazy("Fee"),
    Component.PENALTY: gettext_lazy("Late penalty"),
    Component.EARLY_SETTLEMENT_FEE: gettext_lazy("Early-settlement fee"),
}
# Shown in this order within each installment.
COMPONENT_ORDER = list(COMPONENT_WORDS)

CHANNEL_TRADE_NO_WORDS = {
    Channel.ALIPAY: gettext_lazy("Alipay transaction number"),
    Channel.WECHATPAY: gettext_lazy("WeChat Pay transaction number"),
    Channel.UNIONPAY: gettext_lazy("Bank transaction number"),
}
CARD_METHODS = {PaymentMethodType.BANK_DEBIT_CARD: False, PaymentMethodType.BANK_CREDIT_CARD: True}


class NotReceiptable(Exception):
    """Only a succeeded payment has a receipt."""


@dataclass(frozen=True)
class ReceiptLine:
    installment_number: int | None  # None: a charge on the loan (early-settlement fee)
    due_date: date | None
    component: str  # in words
    amount: Decimal


@dataclass(frozen=True)
class Receipt:
    receipt_number: str
    payment_id: str
    contract_number: str
    vehicle: str
    borrower_name: str
    borrower_phone: str  # masked
    purpose: str
    amount: Decimal
    value_date: date | None
    confirmed_at: datetime | None
    channel: str
    method: str
    method_type: str
    card_tail: str  # "1234", or "" when we cannot know which card was debited
    channel_trade_no_label: str
    channel_trade_no: str
    order_number: str
    installments: list[int]
    lines: list[ReceiptLine]
    allocated_total: Decimal
    credit_applied: Decimal  # paid out of the borrower's credit balance
    credit_added: Decimal  # more than was owed: kept as credit for the next installment
    issued_at: datetime


def receipt_build(*, payment: Payment, cards: Sequence[BoundCard], now: datetime) -> Receipt:
    """The receipt of a succeeded ``payment`` (attempts and allocations prefetched).

    :raises NotReceiptable: when the payment has not succeeded.
    """
    if payment.status != PaymentStatus.SUCCEEDED:
        raise NotReceiptable()
    attempts = list(payment.attempts.all())
    paid_by = next(
        (a for a in reversed(attempts) if a.status == AttemptStatus.SUCCEEDED),
        attempts[-1] if attempts else None,
    )
    allocations = list(payment.allocations.all())
    order = {c.value: n for n, c in enumerate(COMPONENT_ORDER)}
    allocations.sort(
        key=lambda a: (
            a.installment.number if a.installment else 10_000,
            order.get(a.component, 99),
        )
    )
    lines = [
        ReceiptLine(
            installment_number=a.installment.number if a.installment else None,
            due_date=a.installment.due_date if a.installment else None,
            component=str(COMPONENT_WORDS.get(Component(a.component), a.component)),
            amount=a.amount,
        )
        for a in allocations
    ]
    channel = Channel(paid_by.channel) if paid_by else None
    method = PaymentMethodType(paid_by.method_type) if paid_by else None
    borrower = payment.borrower
    return Receipt(
        receipt_number=f"AXR-{payment.public_id.hex[:12].upper()}",
        payment_id=str(payment.public_id),
        contract_number=payment.loan.contract_number,
        vehicle=payment.loan.vehicle,
        borrower_name=borrower.full_name,
        borrower_phone=borrower.masked_phone,
        purpose=str(PaymentPurpose(payment.purpose).label),
        amount=payment.amount,
        value_date=timezone.localdate(payment.value_at) if payment.value_at else None,
        confirmed_at=payment.succeeded_at,
        channel=str(channel.label) if channel else "",
        method=str(method.label) if method else "",
        method_type=method.value if method else "",
        card_tail=_card_tail(method, cards),
        channel_trade_no_label=str(CHANNEL_TRADE_NO_WORDS[channel]) if channel else "",
        channel_trade_no=paid_by.channel_trade_no if paid_by else "",
        order_number=paid_by.out_trade_no if paid_by else "",
        installments=sorted({line.installment_number for line in lines if line.installment_number}),
        lines=lines,
        allocated_total=sum((line.amount for line in lines), ZERO),
        credit_applied=payment.credit_applied,
        credit_added=payment.credit_added,
        issued_at=now,
    )


def installments_words(receipt: Receipt) -> str:
    """ "Installments 3, 4" for the receipt's header; "" when none (all kept as credit)."""
    if not receipt.installments:
        return ""
    numbers = ", ".join(str(n) for n in receipt.installments)
    if len(receipt.installments) == 1:
        return _("Installment %(numbers)s") % {"numbers": numbers}
    return _("Installments %(numbers)s") % {"numbers": numbers}


def _card_tail(method: PaymentMethodType | None, cards: Sequence[BoundCard]) -> str:
    """The last four digits of the debited card, when it can only have been one card.

    An attempt does not record which card it debited; a borrower with one card of the
    method's kind (debit or credit) can only have been charged on that one.
    """
    if method is None or method not in CARD_METHODS:
        return ""
    candidates = [card for card in cards if card.is_credit == CARD_METHODS[method]]
    if len(candidates) != 1:
        return ""
    digits = [c for c in candidates[0].card_masked if c.isdigit()]
    return "".join(digits[-4:])
