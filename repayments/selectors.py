"""Reads: querysets scoped to who is asking, with the joins pages need."""

from __future__ import annotations

from datetime import date

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from repayments.models import Installment, Loan, Payment, PaymentEvent, User


def loans_for_borrower(*, borrower: User, today: date) -> QuerySet[Loan]:
    """The borrower's own loans, with the amount still owed and whether any is overdue."""
    overdue = Installment.objects.filter(
        loan=OuterRef("pk"),
        due_date__lt=today,
        paid_value_date__isnull=True,
    )
    return (
        Loan.objects.filter(borrower=borrower)
        .select_related("product")
        .annotate(
            is_overdue=Exists(overdue),
            installments_left=Count(
                "installments", filter=Q(installments__paid_value_date__isnull=True)
            ),
            principal_repaid=Sum("installments__principal_paid"),
        )
        .order_by("-start_date")
    )


def installments_for_loan(*, loan: Loan) -> QuerySet[Installment]:
    return Installment.objects.filter(loan=loan).order_by("number")


def payments_for_borrower(*, borrower: User) -> QuerySet[Payment]:
    return Payment.objects.filter(borrower=borrower).select_related("loan").order_by("-created_at")


def payment_timeline(*, payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(payment=payment).select_related("attempt").order_by("id")
