from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from repayments.domain.allocation import (
    DEFAULT_ALLOCATION_ORDER,
    Component,
    InstallmentBalance,
    allocate,
    installment_dues,
    is_on_time,
    penalty_to_accrue,
)

D = Decimal


def balance(pk: int, due: date, **parts: str) -> InstallmentBalance:
    return InstallmentBalance(pk, due, {Component(k): D(v) for k, v in parts.items()})


def test_oldest_installment_first_and_product_order_inside() -> None:
    dues = installment_dues(
        [
            balance(2, date(2026, 2, 5), principal="100.00", interest="10.00"),
            balance(
                1,
                date(2026, 1, 5),
                principal="100.00",
                interest="10.00",
                penalty="1.00",
                fee="2.00",
            ),
        ],
        DEFAULT_ALLOCATION_ORDER,
    )
    plan = allocate(D("120.00"), dues)
    assert [(line.installment_id, line.component, line.amount) for line in plan.lines] == [
        (1, Component.PENALTY, D("1.00")),
        (1, Component.FEE, D("2.00")),
        (1, Component.INTEREST, D("10.00")),
        (1, Component.PRINCIPAL, D("100.00")),
        (2, Component.INTEREST, D("7.00")),
    ]
    assert plan.leftover == D("0.00")


def test_overpayment_is_leftover_not_lost() -> None:
    plan = allocate(
        D("150.00"),
        installment_dues(
            [balance(1, date(2026, 1, 5), principal="100.00")], DEFAULT_ALLOCATION_ORDER
        ),
    )
    assert plan.allocated == D("100.00")
    assert plan.leftover == D("50.00")


fen = st.integers(min_value=0, max_value=10_000_000).map(lambda n: D(n).scaleb(-2))


@settings(max_examples=200, deadline=None)
@given(amount=fen, parts=st.lists(st.tuples(fen, fen, fen, fen), min_size=1, max_size=12))
def test_allocation_sums_exactly_to_amount(
    amount: Decimal, parts: list[tuple[Decimal, ...]]
) -> None:
    balances = [
        InstallmentBalance(
            i, date(2026, 1, 1 + i), dict(zip(DEFAULT_ALLOCATION_ORDER, p, strict=True))
        )
        for i, p in enumerate(parts)
    ]
    dues = installment_dues(balances, DEFAULT_ALLOCATION_ORDER)
    plan = allocate(amount, dues)
    owed = sum((d.amount for d in dues), D("0.00"))
    assert plan.allocated + plan.leftover == amount
    assert plan.allocated == min(amount, owed)
    assert all(line.amount > 0 for line in plan.lines)


def test_penalty_waits_out_grace_then_counts_from_due_date() -> None:
    kwargs: dict[str, Any] = {
        "overdue_base": D("1000.00"),
        "daily_rate_percent": D("0.0500"),
        "due_date": date(2026, 1, 5),
        "grace_days": 3,
        "accrued_through": None,
    }
    assert penalty_to_accrue(as_of=date(2026, 1, 8), **kwargs) == D("0.00")
    assert penalty_to_accrue(as_of=date(2026, 1, 9), **kwargs) == D("2.00")  # 4 days x 0.50
    kwargs["accrued_through"] = date(2026, 1, 9)
    assert penalty_to_accrue(as_of=date(2026, 1, 11), **kwargs) == D("1.00")


def test_on_time_is_judged_by_value_date_with_grace() -> None:
    assert is_on_time(value_date=date(2026, 1, 8), due_date=date(2026, 1, 5), grace_days=3)
    assert not is_on_time(value_date=date(2026, 1, 9), due_date=date(2026, 1, 5), grace_days=3)
