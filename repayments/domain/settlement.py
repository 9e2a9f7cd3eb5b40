"""Early settlement (提前结清): what paying a loan off on a given date costs.

Installments already due are owed in full. For the period running on the
settlement date the borrower owes interest only for the days used
(annual rate / 360 per day, on the principal outstanding, capped at that
installment's scheduled interest). Later installments owe principal only:
their interest and fees are waived. The product's early-settlement fee is a
percentage of the principal still outstanding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from repayments.domain.allocation import Component, Due, InstallmentBalance, installment_dues
from repayments.domain.errors import DomainError
from repayments.domain.money import ZERO, round_fen


class NothingToSettle(DomainError):
    """This loan has nothing outstanding."""

    code = "nothing_to_settle"


@dataclass(frozen=True)
class OpenInstallment:
    balance: InstallmentBalance
    period_start: date  # the previous due date, or the loan's start date


def settlement_dues(
    *,
    installments: Sequence[OpenInstallment],
    settlement_date: date,
    annual_rate_percent: Decimal,
    early_fee_percent: Decimal,
    order: Sequence[Component],
) -> list[Due]:
    """List every amount owed to settle the loan on ``settlement_date``.

    :raises NothingToSettle: when no installment owes anything.
    """
    open_ones = sorted(
        (i for i in installments if i.balance.total > 0), key=lambda i: i.balance.due_date
    )
    if not open_ones:
        raise NothingToSettle()
    due = [i.balance for i in open_ones if i.balance.due_date <= settlement_date]
    future = [i for i in open_ones if i.balance.due_date > settlement_date]
    dues = installment_dues(due, order)
    future_principal = sum(
        (i.balance.outstanding.get(Component.PRINCIPAL, ZERO) for i in future), ZERO
    )
    if future:
        current = future[0]
        interest = _accrued_interest(
            current, future_principal, settlement_date, annual_rate_percent
        )
        if interest > 0:
            dues.append(Due(current.balance.installment_id, Component.INTEREST, interest))
    for item in future:
        principal = item.balance.outstanding.get(Component.PRINCIPAL, ZERO)
        if principal > 0:
            dues.append(Due(item.balance.installment_id, Component.PRINCIPAL, principal))
    unpaid_principal = future_principal + sum(
        (b.outstanding.get(Component.PRINCIPAL, ZERO) for b in due), ZERO
    )
    fee = round_fen(unpaid_principal * early_fee_percent / Decimal(100))
    if fee > 0:
        dues.append(Due(None, Component.EARLY_SETTLEMENT_FEE, fee))
    return dues


def _accrued_interest(
    current: OpenInstallment, principal: Decimal, on: date, annual_rate_percent: Decimal
) -> Decimal:
    days = max((on - current.period_start).days, 0)
    accrued = round_fen(principal * annual_rate_percent / Decimal(100) / Decimal(360) * days)
    return min(accrued, current.balance.outstanding.get(Component.INTEREST, ZERO))
