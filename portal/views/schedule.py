"""A loan's repayment schedule: every installment with what was due, paid and is left.

Whether an installment was paid on time is judged by the value date of the payment
that completed it (rule 7), as booked by the allocation service; the page only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from portal.views.payflow import user_of
from repayments.domain.money import ZERO, round_fen
from repayments.models import Installment, Loan, LoanStatus
from repayments.selectors import installments_for_loan, loan_for_borrower
from repayments.services.allocation import accrue_penalties


@dataclass(frozen=True)
class InstallmentRow:
    number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    fee: Decimal
    penalty: Decimal
    total: Decimal
    paid: Decimal
    remaining: Decimal
    paid_value_date: date | None
    status: str  # in words, shown beside a symbol: never colour alone
    symbol: str
    tone: str  # ok | bad | progress | neutral
    is_next: bool


@dataclass(frozen=True)
class ScheduleTotals:
    principal: Decimal
    interest: Decimal
    fee: Decimal
    penalty: Decimal
    total: Decimal
    paid: Decimal
    remaining: Decimal


def installment_rows(
    loan: Loan, installments: list[Installment], today: date
) -> list[InstallmentRow]:
    """One row per installment; penalties accrued to ``today`` are shown (never saved)."""
    if loan.status == LoanStatus.ACTIVE:
        accrue_penalties(loan, installments, as_of=today)
    next_number = next((i.number for i in installments if not i.is_paid), None)
    rows = []
    for item in installments:
        status, symbol, tone = _status(item, loan, today)
        paid = round_fen(item.total_paid)
        total = round_fen(item.total_due)
        rows.append(
            InstallmentRow(
                number=item.number,
                due_date=item.due_date,
                principal=item.principal_due,
                interest=item.interest_due,
                fee=item.fee_due,
                penalty=round_fen(item.penalty_due),
                total=total,
                paid=paid,
                remaining=max(total - paid, ZERO),
                paid_value_date=item.paid_value_date,
                status=status,
                symbol=symbol,
                tone=tone,
                is_next=item.number == next_number and loan.status == LoanStatus.ACTIVE,
            )
        )
    return rows


def schedule_totals(rows: list[InstallmentRow]) -> ScheduleTotals:
    def total(name: str) -> Decimal:
        return sum((getattr(row, name) for row in rows), ZERO)

    return ScheduleTotals(
        principal=total("principal"),
        interest=total("interest"),
        fee=total("fee"),
        penalty=total("penalty"),
        total=total("total"),
        paid=total("paid"),
        remaining=total("remaining"),
    )


def _status(item: Installment, loan: Loan, today: date) -> tuple[str, str, str]:
    if item.is_paid:
        if item.paid_on_time is False:
            return _("Paid late"), "✓", "bad"
        if item.paid_value_date is None and loan.status != LoanStatus.ACTIVE:
            return _("Settled"), "✓", "ok"
        return _("Paid on time"), "✓", "ok"
    grace_end = item.due_date.toordinal() + loan.product.grace_days
    if loan.status != LoanStatus.ACTIVE:
        return _("Settled"), "✓", "ok"
    if today.toordinal() > grace_end:
        return _("Overdue: not yet paid"), "!", "bad"
    if today > item.due_date:
        return _("In grace period"), "!", "progress"
    if item.total_paid > 0:
        return _("Partly paid"), "…", "progress"
    if today == item.due_date:
        return _("Due today"), "…", "progress"
    return _("Not yet due"), "○", "neutral"


@login_required
@require_GET
def schedule(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Every installment of one of the borrower's loans (two queries)."""
    loan = loan_for_borrower(borrower=user_of(request), loan_id=loan_id)
    if loan is None:
        raise Http404
    today = timezone.localdate()
    installments = list(installments_for_loan(loan=loan))
    rows = installment_rows(loan, installments, today)
    context = {
        "loan": loan,
        "rows": rows,
        "totals": schedule_totals(rows),
        "today": today,
        "repayable": loan.status == LoanStatus.ACTIVE,
        "grace_days": loan.product.grace_days,
    }
    return render(request, "portal/schedule.html", context)
