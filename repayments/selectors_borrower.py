"""Reads for the borrower's schedule, settlement and receipt pages, scoped to the borrower.

Kept beside ``repayments.selectors`` (same rules: every query filters by owner, and
someone else's object is indistinguishable from one that does not exist).
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import Prefetch, Q

from repayments.domain.states import PaymentStatus
from repayments.models import (
    Allocation,
    Loan,
    Payment,
    PaymentAttempt,
    SettlementQuote,
    SettlementQuoteLine,
    User,
)


def quote_for_borrower(*, borrower: User, loan: Loan, public_id: UUID) -> SettlementQuote | None:
    """One settlement quote of the borrower's ``loan``, with its lines, or None."""
    return (
        SettlementQuote.objects.filter(public_id=public_id, loan=loan, loan__borrower=borrower)
        .prefetch_related(
            Prefetch("lines", queryset=SettlementQuoteLine.objects.order_by("position"))
        )
        .first()
    )


def succeeded_payment_for_borrower(*, borrower: User, public_id: UUID) -> Payment | None:
    """A succeeded payment of the borrower with what a receipt shows, or None."""
    return (
        Payment.objects.filter(
            borrower=borrower, public_id=public_id, status=PaymentStatus.SUCCEEDED
        )
        .select_related("loan", "borrower")
        .prefetch_related(
            Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("created_at", "id")),
            Prefetch(
                "allocations",
                queryset=Allocation.objects.select_related("installment").order_by(
                    "installment__number", "id"
                ),
            ),
        )
        .first()
    )


def payments_by_trade_number(*, borrower: User, trade_no: str) -> list[UUID]:
    """Public ids of the borrower's payments with an attempt under ``trade_no`` (the
    channel's transaction number or our order number); another borrower's never."""
    attempts = PaymentAttempt.objects.filter(
        Q(channel_trade_no=trade_no) | Q(out_trade_no=trade_no),
        payment__borrower=borrower,
    )
    ids = attempts.order_by("-created_at").values_list("payment__public_id", flat=True)
    return list(dict.fromkeys(ids))
