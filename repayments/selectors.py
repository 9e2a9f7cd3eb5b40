"""Reads: querysets scoped to who is asking, with the joins pages need."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum

from repayments.models import (
    Allocation,
    BoundCard,
    Installment,
    Loan,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    User,
)


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


# --- The borrower's repayment record (车贷还款记录) ---------------------------------


@dataclass(frozen=True)
class RecordAttempt:
    """What a record row shows of one attempt."""

    method_type: str
    channel: str
    status: str
    failure_code: str
    failure_message: str


@dataclass(frozen=True)
class RecordPayment:
    """What a record row shows of one payment: plain values, no model instances.

    The record page is read far more than anything else; building model instances for
    a page of payments and their attempts was most of its cost.
    """

    public_id: UUID
    amount: Decimal
    purpose: str
    status: str
    created_at: datetime
    value_at: datetime | None
    succeeded_at: datetime | None
    contract_number: str
    vehicle: str
    attempts: tuple[RecordAttempt, ...]  # oldest first


_RECORD_PAYMENT_COLUMNS = (
    "pk",
    "public_id",
    "amount",
    "purpose",
    "status",
    "created_at",
    "value_at",
    "succeeded_at",
    "loan__contract_number",
    "loan__vehicle",
)
_RECORD_ATTEMPT_COLUMNS = ("method_type", "channel", "status", "failure_code", "failure_message")


def payments_for_record(
    *,
    borrower: User,
    loan_id: int | None = None,
    statuses: Collection[str] = (),
    created_from: datetime | None = None,
    created_before: datetime | None = None,
    trade_no: str = "",
) -> QuerySet[Payment, tuple[Any, ...]]:
    """The borrower's payments, newest first, filtered: the columns a record row shows.

    Page with it (the paginator counts it), then pass the page to
    :func:`record_payments`: three queries per page whatever the number of payments.
    """
    payments = Payment.objects.filter(borrower=borrower)
    if loan_id is not None:
        payments = payments.filter(loan_id=loan_id)
    if statuses:
        payments = payments.filter(status__in=list(statuses))
    if created_from is not None:
        payments = payments.filter(created_at__gte=created_from)
    if created_before is not None:
        payments = payments.filter(created_at__lt=created_before)
    if trade_no:
        matching = PaymentAttempt.objects.filter(
            Q(channel_trade_no=trade_no) | Q(out_trade_no=trade_no)
        ).values("payment_id")
        payments = payments.filter(pk__in=matching)
    return payments.order_by("-created_at", "-id").values_list(*_RECORD_PAYMENT_COLUMNS)


def record_payments(rows: Iterable[tuple[Any, ...]]) -> list[RecordPayment]:
    """The page's rows from :func:`payments_for_record`, each with its attempts (one query)."""
    rows = list(rows)
    attempts: dict[int, list[RecordAttempt]] = {row[0]: [] for row in rows}
    found = (
        PaymentAttempt.objects.filter(payment_id__in=list(attempts))
        .order_by("created_at", "id")
        .values_list("payment_id", *_RECORD_ATTEMPT_COLUMNS)
    )
    for payment_id, *columns in found:
        attempts[payment_id].append(RecordAttempt(*columns))
    return [
        RecordPayment(*row[1:], attempts=tuple(attempts[row[0]]))  # type: ignore[misc]
        for row in rows
    ]


def record_payment_of(payment: Payment) -> RecordPayment:
    """The same values from a payment loaded with its loan and (prefetched) attempts."""
    return RecordPayment(
        public_id=payment.public_id,
        amount=payment.amount,
        purpose=payment.purpose,
        status=payment.status,
        created_at=payment.created_at,
        value_at=payment.value_at,
        succeeded_at=payment.succeeded_at,
        contract_number=payment.loan.contract_number,
        vehicle=payment.loan.vehicle,
        attempts=tuple(
            RecordAttempt(*(getattr(a, name) for name in _RECORD_ATTEMPT_COLUMNS))
            for a in payment.attempts.all()
        ),
    )


def _tokens(table: str, *, owned_by: str, join: str = "") -> str:
    """How many of the borrower's rows a table holds and the sum of their tokens."""
    counted = "SELECT count(*) || ':' || coalesce(sum(t.record_token), 0)"
    return f"({counted} FROM {table} t {join} WHERE {owned_by} = %(borrower)s)"


# One statement: each table's count and token sum, and how many deletions there ever
# were (migration 0015 keeps both).
_RECORD_STAMP_SQL = "SELECT {}, {}, {}, {}, (SELECT deletions FROM repayments_record_clock)".format(  # noqa: S608
    _tokens(Payment._meta.db_table, owned_by="t.borrower_id"),
    _tokens(
        PaymentAttempt._meta.db_table,
        join=f"JOIN {Payment._meta.db_table} p ON p.id = t.payment_id",
        owned_by="p.borrower_id",
    ),
    _tokens(Loan._meta.db_table, owned_by="t.borrower_id"),
    _tokens(BoundCard._meta.db_table, owned_by="t.borrower_id"),
)


def record_stamp(*, borrower: User) -> str:
    """What the borrower's record page is made of, in one short string: the same stamp
    read twice means no payment, attempt, loan or card of theirs changed in between.

    Every update gives the row a larger token, every insert adds to a count and every
    delete is counted (database triggers, migration 0015): a change always moves a
    count or a sum. Read
    it *before* the rows a page is rendered from: the page is then never older than the
    stamp it is stored under.
    """
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_STAMP_SQL, {"borrower": borrower.pk})
        row = cursor.fetchone()
    return "/".join(map(str, row))


def payment_for_borrower(*, borrower: User, public_id: UUID) -> Payment | None:
    """One of the borrower's own payments with everything its detail page shows, or None
    (someone else's payment is indistinguishable from one that does not exist)."""
    return (
        Payment.objects.filter(borrower=borrower, public_id=public_id)
        .select_related("loan")
        .prefetch_related(
            Prefetch("attempts", queryset=_attempts_in_order()),
            Prefetch("events", queryset=PaymentEvent.objects.order_by("occurred_at", "id")),
            Prefetch(
                "allocations",
                queryset=Allocation.objects.select_related("installment").order_by("id"),
            ),
        )
        .first()
    )


def payment_by_idempotency_key(*, borrower: User, key: str) -> Payment | None:
    return (
        Payment.objects.filter(borrower=borrower, idempotency_key=key)
        .prefetch_related(Prefetch("attempts", queryset=_attempts_in_order()))
        .first()
    )


def loan_for_borrower(*, borrower: User, loan_id: int) -> Loan | None:
    return Loan.objects.filter(borrower=borrower, pk=loan_id).select_related("product").first()


def loan_choices_for_borrower(*, borrower: User) -> list[tuple[int, str, str]]:
    """(id, contract number, vehicle) of each of the borrower's loans, for filters."""
    rows = Loan.objects.filter(borrower=borrower).order_by("-start_date", "contract_number")
    return list(rows.values_list("pk", "contract_number", "vehicle"))


def cards_for_borrower(*, borrower: User) -> list[BoundCard]:
    """Every card the borrower ever bound (active or not), best priority first."""
    return list(BoundCard.objects.filter(borrower=borrower).order_by("priority", "id"))


def _attempts_in_order() -> QuerySet[PaymentAttempt]:
    return PaymentAttempt.objects.order_by("created_at", "id")
