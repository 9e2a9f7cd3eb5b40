"""The allocation engine: how money pays installments, and what a loan owes.

One engine serves both booking a payment and quoting an early settlement, so
a quote is exactly what booking the quoted amount will do. Installments are
paid oldest first; inside an installment the product's component order
applies (default penalty -> fee -> interest -> principal). What is left over
becomes credit balance, never lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from repayments.domain.money import ZERO, round_fen


class Component(StrEnum):
    PENALTY = "penalty"
    FEE = "fee"
    INTEREST = "interest"
    PRINCIPAL = "principal"
    EARLY_SETTLEMENT_FEE = "early_settlement_fee"


DEFAULT_ALLOCATION_ORDER = (
    Component.PENALTY,
    Component.FEE,
    Component.INTEREST,
    Component.PRINCIPAL,
)


@dataclass(frozen=True)
class InstallmentBalance:
    """What one installment still owes, component by component."""

    installment_id: int
    due_date: date
    outstanding: Mapping[Component, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.outstanding.values(), ZERO)


@dataclass(frozen=True)
class Due:
    """One amount owed; ``installment_id`` is None for a loan-level charge."""

    installment_id: int | None
    component: Component
    amount: Decimal


@dataclass(frozen=True)
class AllocationLine:
    installment_id: int | None
    component: Component
    amount: Decimal


@dataclass(frozen=True)
class AllocationPlan:
    lines: tuple[AllocationLine, ...]
    leftover: Decimal
    paid_by_installment: Mapping[int, Decimal] = field(default_factory=dict)

    @property
    def allocated(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


def installment_dues(
    balances: Iterable[InstallmentBalance], order: Sequence[Component]
) -> list[Due]:
    """List what the given installments owe, oldest first, components in ``order``."""
    dues = []
    for balance in sorted(balances, key=lambda b: (b.due_date, b.installment_id)):
        for component in order:
            amount = balance.outstanding.get(component, ZERO)
            if amount > 0:
                dues.append(Due(balance.installment_id, component, amount))
    return dues


def allocate(amount: Decimal, dues: Sequence[Due]) -> AllocationPlan:
    """Pay ``dues`` in order with ``amount``; the remainder is ``leftover``."""
    remaining = amount
    lines: list[AllocationLine] = []
    paid: dict[int, Decimal] = {}
    for due in dues:
        if remaining <= 0:
            break
        part = min(remaining, due.amount)
        lines.append(AllocationLine(due.installment_id, due.component, part))
        if due.installment_id is not None:
            paid[due.installment_id] = paid.get(due.installment_id, ZERO) + part
        remaining -= part
    return AllocationPlan(lines=tuple(lines), leftover=remaining, paid_by_installment=paid)


def penalty_to_accrue(
    *,
    overdue_base: Decimal,
    daily_rate_percent: Decimal,
    due_date: date,
    grace_days: int,
    accrued_through: date | None,
    as_of: date,
) -> Decimal:
    """Return the penalty that accrues on an overdue installment up to ``as_of``.

    Within the grace period nothing accrues. Past it, the penalty counts from
    the due date (or from where accrual last stopped), per day, on the unpaid
    principal and interest.
    """
    if overdue_base <= 0 or as_of <= due_date + timedelta(days=grace_days):
        return ZERO
    start = max(due_date, accrued_through) if accrued_through else due_date
    days = (as_of - start).days
    if days <= 0:
        return ZERO
    return round_fen(overdue_base * daily_rate_percent / Decimal(100) * days)


def is_on_time(*, value_date: date, due_date: date, grace_days: int) -> bool:
    """Rule 7: judged by the date the channel accepted the money, with grace."""
    return value_date <= due_date + timedelta(days=grace_days)
