"""Booking a succeeded payment to installments, exactly once (rules 3, 6, 7)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from repayments.domain.allocation import (
    AllocationPlan,
    Component,
    Due,
    allocate,
    installment_dues,
    is_on_time,
    penalty_to_accrue,
)
from repayments.domain.money import ZERO
from repayments.domain.settlement import OpenInstallment, settlement_dues
from repayments.domain.states import PaymentStatus
from repayments.models import (
    Allocation,
    EventKind,
    Installment,
    Loan,
    LoanStatus,
    Payment,
    PaymentEvent,
    PaymentPurpose,
)
from repayments.services.audit import audit_append, audit_batch
from repayments.services.errors import AlreadyAllocated, PaymentNotSucceeded
from repayments.services.write_behind import flush_deferred, insert_later, save_fields

_PAID_FIELD = {
    Component.PENALTY: "penalty_paid",
    Component.FEE: "fee_paid",
    Component.INTEREST: "interest_paid",
    Component.PRINCIPAL: "principal_paid",
}
_DUE_FIELD = {
    Component.PENALTY: "penalty_due",
    Component.FEE: "fee_due",
    Component.INTEREST: "interest_due",
    Component.PRINCIPAL: "principal_due",
}


# The payment fields a booking sets; :func:`payment_book` leaves saving them to its caller.
BOOKING_FIELDS = ("allocated_at", "credit_applied", "credit_added")


def payment_allocate(*, payment_id: int, now: datetime) -> list[Allocation]:
    """Book a succeeded payment to its loan's installments; leftover becomes credit.

    :raises PaymentNotSucceeded: unless the payment succeeded.
    :raises AlreadyAllocated: on a second call for the same payment.
    """
    with transaction.atomic(), audit_batch():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        events: list[PaymentEvent] = []
        rows = payment_book(payment=payment, now=now, events=events)
        payment.save(update_fields=list(BOOKING_FIELDS))
        PaymentEvent.objects.bulk_create(events)
    return rows


def payment_book(
    *, payment: Payment, now: datetime, events: list[PaymentEvent]
) -> list[Allocation]:
    """Book a succeeded payment whose row the caller holds locked, in its transaction.

    The hot path (a success being recorded) writes the payment row once for the
    state change and the booking together, and the timeline in one INSERT: so the
    payment's :data:`BOOKING_FIELDS` are set here but saved by the caller, and the
    allocation event is appended to ``events`` for the caller to write.

    :raises PaymentNotSucceeded: unless the payment succeeded.
    :raises AlreadyAllocated: on a second call for the same payment.
    """
    if payment.status != PaymentStatus.SUCCEEDED:
        raise PaymentNotSucceeded()
    if payment.allocated_at is not None:
        raise AlreadyAllocated()
    loan, installments = _locked_loan(payment.loan_id)
    payment.loan = loan  # the notice that follows reads it
    value_date = timezone.localdate(payment.value_at or now)
    before = {i.pk: _booked_state(i) for i in installments}
    accrue_penalties(loan, installments, as_of=value_date)
    plan, credit_used = _plan(payment, loan, installments, value_date)
    rows = _book(payment, loan, installments, plan, value_date, now)
    # The notice that follows reads both: kept as Django's prefetch cache, so it
    # needs no query (the rows are current: they are what this booking wrote).
    _cache_related(loan, "installments", installments)
    _cache_related(payment, "allocations", rows)
    _save_changed(installments, before)
    _update_loan(loan, installments, plan, credit_used, value_date)
    payment.allocated_at = now
    payment.credit_applied = credit_used
    payment.credit_added = plan.leftover
    events.append(_record(payment, loan, plan, value_date, now))
    return rows


_prelocked = threading.local()


@contextmanager
def loans_prelocked(loan_ids: Collection[int]) -> Iterator[None]:
    """Lock these loans and their installments now, for the bookings in this block.

    For a batch of bookings in one transaction (the callback inbox): two
    statements instead of two per booking, and every loan locked in id order, so
    two batches wait for each other instead of deadlocking. A booking in the
    block uses these in-memory rows, which the bookings before it kept current
    (nothing else writes them inside the block).
    """
    loans = (
        Loan.objects.select_for_update(of=("self",))
        .select_related("product")
        .filter(pk__in=sorted(loan_ids))
        .order_by("pk")
    )
    rows: dict[int, tuple[Loan, list[Installment]]] = {loan.pk: (loan, []) for loan in loans}
    installments = Installment.objects.select_for_update().filter(loan_id__in=list(rows))
    for item in installments.order_by("loan_id", "number"):
        rows[item.loan_id][1].append(item)
    outer = getattr(_prelocked, "rows", None)
    _prelocked.rows = rows
    try:
        yield
    finally:
        _prelocked.rows = outer


def _locked_loan(loan_id: int) -> tuple[Loan, list[Installment]]:
    """The loan and its installments (by number), locked for the caller's transaction."""
    prelocked: dict[int, tuple[Loan, list[Installment]]] | None = getattr(_prelocked, "rows", None)
    if prelocked is not None and loan_id in prelocked:
        return prelocked[loan_id]
    # Read from the database: anything a batch holds back must be written first.
    flush_deferred()
    # The loan row only: its product is read, and locking that too would make
    # every booking on one product wait for the others.
    loan = Loan.objects.select_for_update(of=("self",)).select_related("product").get(pk=loan_id)
    installments = Installment.objects.select_for_update().filter(loan=loan).order_by("number")
    return loan, list(installments)


def _cache_related(instance: Loan | Payment, name: str, rows: Sequence[object]) -> None:
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    cache[name] = list(rows)


def accrue_penalties(loan: Loan, installments: Sequence[Installment], *, as_of: date) -> None:
    """Add late penalties accrued up to ``as_of`` to each overdue installment (in memory)."""
    for item in installments:
        owed = item.outstanding()
        base = owed[Component.PRINCIPAL] + owed[Component.INTEREST]
        extra = penalty_to_accrue(
            overdue_base=base,
            daily_rate_percent=loan.product.penalty_daily_rate_percent,
            due_date=item.due_date,
            grace_days=loan.product.grace_days,
            accrued_through=item.penalty_accrued_through,
            as_of=as_of,
        )
        if extra > 0:
            item.penalty_due += extra
            item.penalty_accrued_through = as_of


def open_installments(loan: Loan, installments: Sequence[Installment]) -> list[OpenInstallment]:
    """Pair each installment's balance with the start of its period."""
    starts = [loan.start_date] + [i.due_date for i in installments[:-1]]
    return [
        OpenInstallment(i.balance(), start) for i, start in zip(installments, starts, strict=True)
    ]


def settlement_dues_for(loan: Loan, installments: Sequence[Installment], on: date) -> list[Due]:
    """What settling ``loan`` on ``on`` costs, from its current (penalty-accrued) state."""
    return settlement_dues(
        installments=open_installments(loan, installments),
        settlement_date=on,
        annual_rate_percent=loan.annual_rate_percent,
        early_fee_percent=loan.product.early_settlement_fee_percent,
        order=loan.product.components_in_order,
    )


def _plan(
    payment: Payment, loan: Loan, installments: list[Installment], value_date: date
) -> tuple[AllocationPlan, Decimal]:
    if payment.purpose == PaymentPurpose.EARLY_SETTLEMENT and payment.quote is not None:
        dues = settlement_dues_for(loan, installments, payment.quote.settlement_date)
        owed = sum((d.amount for d in dues), ZERO)
        credit = min(loan.credit_balance, owed)
        plan = allocate(payment.amount + credit, dues)
        if plan.leftover >= 0 and plan.allocated == owed:
            _waive_unquoted(installments, plan)
            return plan, credit
    # A regular payment pays what is due by its value date, then the next installment.
    unpaid = [i for i in installments if not i.is_paid]
    current = [i for i in unpaid if i.due_date <= value_date] or unpaid[:1]
    if unpaid and current[-1] is not unpaid[-1] and current[-1].due_date <= value_date:
        current.append(unpaid[len(current)])
    dues = installment_dues((i.balance() for i in current), loan.product.components_in_order)
    return allocate(payment.amount, dues), ZERO


def _waive_unquoted(installments: list[Installment], plan: AllocationPlan) -> None:
    """On settlement, interest and fees of future periods beyond the quote are waived."""
    paid: dict[tuple[int, Component], Decimal] = {}
    for line in plan.lines:
        if line.installment_id is not None:
            paid[(line.installment_id, line.component)] = line.amount
    for item in installments:
        for component in (Component.INTEREST, Component.FEE, Component.PENALTY):
            owed = item.outstanding()[component]
            charged = paid.get((item.pk, component), ZERO)
            if owed > charged:
                setattr(
                    item,
                    _DUE_FIELD[component],
                    getattr(item, _DUE_FIELD[component]) - owed + charged,
                )


def _book(
    payment: Payment,
    loan: Loan,
    installments: list[Installment],
    plan: AllocationPlan,
    value_date: date,
    now: datetime,
) -> list[Allocation]:
    by_id = {i.pk: i for i in installments}
    for line in plan.lines:
        if line.installment_id is not None:
            item = by_id[line.installment_id]
            field = _PAID_FIELD[line.component]
            setattr(item, field, getattr(item, field) + line.amount)
    for item in installments:
        if item.paid_value_date is None and item.is_paid:
            item.paid_value_date = value_date
            item.paid_on_time = is_on_time(
                value_date=value_date,
                due_date=item.due_date,
                grace_days=loan.product.grace_days,
            )
    rows = [
        Allocation(
            payment=payment,
            installment_id=line.installment_id,
            component=line.component,
            amount=line.amount,
            value_date=value_date,
            created_at=now,
        )
        for line in plan.lines
    ]
    insert_later(Allocation, rows)
    return rows


_BOOKED_FIELDS = (
    *_PAID_FIELD.values(),
    *_DUE_FIELD.values(),
    "penalty_accrued_through",
    "paid_value_date",
    "paid_on_time",
)


def _booked_state(item: Installment) -> tuple[object, ...]:
    return tuple(getattr(item, name) for name in _BOOKED_FIELDS)


def _save_changed(installments: list[Installment], before: dict[int, tuple[object, ...]]) -> None:
    """Write only the installments this booking touched (usually one or two of many)."""
    for item in installments:
        old = before[item.pk]
        changed = [
            n for n, v, o in zip(_BOOKED_FIELDS, _booked_state(item), old, strict=True) if v != o
        ]
        if changed:
            save_fields(item, changed)


def _update_loan(
    loan: Loan,
    installments: list[Installment],
    plan: AllocationPlan,
    credit_used: Decimal,
    value_date: date,
) -> None:
    loan.credit_balance += plan.leftover - credit_used
    fields = ["credit_balance"]
    if all(i.is_paid for i in installments):
        early = any(i.due_date > value_date for i in installments)
        loan.status = LoanStatus.SETTLED_EARLY if early else LoanStatus.SETTLED
        loan.settled_date = value_date
        fields += ["status", "settled_date"]
    save_fields(loan, fields)


def _record(
    payment: Payment, loan: Loan, plan: AllocationPlan, value_date: date, now: datetime
) -> PaymentEvent:
    """Audit the booking and return its timeline event (unsaved)."""
    lines = [
        {
            "installment": line.installment_id,
            "component": line.component,
            "amount": str(line.amount),
        }
        for line in plan.lines
    ]
    audit_append(
        action="payment.allocated",
        object_type="payment",
        object_id=payment.public_id,
        now=now,
        data={
            "loan": loan.contract_number,
            "allocated": str(plan.allocated),
            "credit": str(plan.leftover),
            "loan_status": loan.status,
        },
    )
    return PaymentEvent(
        payment=payment,
        kind=EventKind.ALLOCATION,
        summary=f"allocated {plan.allocated} (value date {value_date}), credit {plan.leftover}",
        data={"lines": lines, "credit_added": str(plan.leftover)},
        occurred_at=now,
    )
