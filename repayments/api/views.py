"""Borrower API views. Thin: read the clock, scope to the caller, call one service, shape.

Every queryset starts from ``request.user``: another borrower's id is not found.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import date
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from notifications.services import notices_in_inbox
from repayments.api import serializers as s
from repayments.api.payments import payment_submit
from repayments.api.permissions import borrower_of
from repayments.api.throttling import PaymentRateThrottle
from repayments.domain.money import ZERO
from repayments.domain.states import OPEN_ATTEMPT_STATUSES, PaymentStatus
from repayments.models import (
    BoundCard,
    Dispute,
    Installment,
    Loan,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
    SettlementQuote,
    SettlementQuoteLine,
)
from repayments.selectors import loans_for_borrower
from repayments.services.disputes import dispute_open
from repayments.services.janitor import attempt_query_now
from repayments.services.methods import CARD_METHODS, payment_choice_for
from repayments.services.settlement import settlement_quote_create

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
KEY_MESSAGE = _("Send an Idempotency-Key header: 1 to 64 letters, digits or . _ : -")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per payment you intend (e.g. a UUID). Retrying with the same "
    "key and body returns the same payment.",
    pattern=KEY_PATTERN.pattern,
)
ID_REGEX = "[0-9]{1,19}"
# Payments and disputes are named by their public id, never by the row number.
PUBLIC_ID = OpenApiParameter(
    "id", uuid.UUID, OpenApiParameter.PATH, description="Its public id, as listed (a UUID)."
)


def _uuid_or_404(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Http404 from None


def own_loan(request: Request, loan_id: Any) -> Loan:
    return get_object_or_404(
        Loan.objects.select_related("product"), pk=loan_id, borrower=borrower_of(request)
    )


def payments_with_timeline(queryset: QuerySet[Payment]) -> QuerySet[Payment]:
    """Payments with attempts and timeline in three queries, whatever the page size."""
    return queryset.select_related("quote").prefetch_related(
        Prefetch("attempts", queryset=PaymentAttempt.objects.order_by("created_at", "id")),
        Prefetch("events", queryset=PaymentEvent.objects.select_related("attempt").order_by("id")),
    )


def _with_next_due(loan: Loan) -> Loan:
    """Add what a loan card shows: outstanding principal and the next amount due."""
    open_installments: list[Installment] = getattr(loan, "open_installments", [])
    repaid = getattr(loan, "principal_repaid", None) or ZERO
    nxt = open_installments[0] if open_installments else None
    loan.outstanding_principal = loan.principal - repaid  # type: ignore[attr-defined]
    loan.next_due_date = nxt.due_date if nxt else None  # type: ignore[attr-defined]
    loan.next_due_amount = (  # type: ignore[attr-defined]
        nxt.total_due - nxt.total_paid if nxt else None
    )
    return loan


def _installment_row(installment: Installment, today: date) -> Installment:
    remaining = installment.total_due - installment.total_paid
    if installment.is_paid:
        row_status = "paid"
    elif installment.due_date < today:
        row_status = "overdue"
    elif installment.total_paid > 0:
        row_status = "partially_paid"
    else:
        row_status = "upcoming"
    installment.remaining = remaining  # type: ignore[attr-defined]
    installment.status = row_status  # type: ignore[attr-defined]
    return installment


class LoanViewSet(viewsets.ReadOnlyModelViewSet):
    """The borrower's own loans and everything hanging off one."""

    queryset = Loan.objects.all()  # for the schema only; get_queryset scopes it
    serializer_class = s.LoanSerializer
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[Loan]:
        open_installments = Prefetch(
            "installments",
            queryset=Installment.objects.filter(paid_value_date__isnull=True).order_by("number"),
            to_attr="open_installments",
        )
        today = timezone.localdate()
        return loans_for_borrower(borrower=borrower_of(self.request), today=today).prefetch_related(
            open_installments
        )

    def get_serializer(self, *args: Any, **kwargs: Any) -> BaseSerializer:
        if args and self.action in ("list", "retrieve"):
            rows = args[0]
            args = (
                [_with_next_due(r) for r in rows] if kwargs.get("many") else _with_next_due(rows),
            )
        return super().get_serializer(*args, **kwargs)

    @extend_schema(responses=s.ScheduleSerializer)
    @action(detail=True)
    def schedule(self, request: Request, pk: str) -> Response:
        """Every installment with what is due, paid and remaining."""
        loan = own_loan(request, pk)
        today = timezone.localdate()
        rows = [_installment_row(i, today) for i in loan.installments.order_by("number")]
        return Response(s.ScheduleSerializer({"loan": loan.pk, "installments": rows}).data)

    @extend_schema(responses=s.PaymentSerializer(many=True))
    @action(detail=True)
    def repayments(self, request: Request, pk: str) -> Response:
        """The loan's payments, newest first, each with attempts and timeline."""
        loan = own_loan(request, pk)
        payments = payments_with_timeline(
            Payment.objects.filter(loan=loan, borrower=borrower_of(request)).order_by(
                "-created_at", "-id"
            )
        )
        page = self.paginate_queryset(payments)
        return self.get_paginated_response(s.PaymentSerializer(page, many=True).data)

    @extend_schema(
        parameters=[s.PaymentOptionsQuerySerializer], responses=s.PaymentOptionsSerializer
    )
    @action(detail=True, url_path="payment-options")
    def payment_options(self, request: Request, pk: str) -> Response:
        """Every method, each available or with the reason it is not and what to do."""
        loan = own_loan(request, pk)
        query = s.PaymentOptionsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        amount = query.validated_data["amount"]
        choice = payment_choice_for(loan=loan, amount=amount, now=timezone.now())
        options = [
            {
                "method": o.option.method_type,
                "label": o.label,
                "channel": o.option.channel,
                "available": o.option.available,
                "reason_code": o.option.reason,
                "message": o.message,
                "recommended": o.option.method_type == choice.recommended,
                "retry_after": o.option.retry_after,
                "limit": o.option.limit,
            }
            for o in choice.options
        ]
        body = {
            "loan": loan.pk,
            "amount": amount,
            "recommended": choice.recommended,
            "advice": choice.advice,
            "options": options,
        }
        return Response(s.PaymentOptionsSerializer(body).data)

    @extend_schema(
        request=s.SettlementQuoteCreateSerializer,
        responses={201: s.SettlementQuoteSerializer},
    )
    @action(detail=True, methods=["post"], url_path="settlement-quotes")
    def settlement_quotes(self, request: Request, pk: str) -> Response:
        """Quote settling the loan early, with the full breakdown; valid until `valid_until`."""
        loan = own_loan(request, pk)
        body = s.SettlementQuoteCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        now = timezone.now()
        day = body.validated_data.get("settlement_date") or timezone.localdate(now)
        quote = settlement_quote_create(loan=loan, settlement_date=day, now=now)
        return Response(
            s.SettlementQuoteSerializer(_quote(loan, quote.public_id)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        responses=s.SettlementQuoteSerializer,
        parameters=[OpenApiParameter("quote_id", uuid.UUID, OpenApiParameter.PATH)],
    )
    @action(detail=True, url_path=r"settlement-quotes/(?P<quote_id>[^/.]+)")
    def settlement_quote(self, request: Request, pk: str, quote_id: str) -> Response:
        """A quote given earlier for this loan."""
        loan = own_loan(request, pk)
        return Response(s.SettlementQuoteSerializer(_quote(loan, _uuid_or_404(quote_id))).data)


def _quote(loan: Loan, public_id: uuid.UUID) -> SettlementQuote:
    lines = SettlementQuoteLine.objects.select_related("installment").order_by("position")
    return get_object_or_404(
        SettlementQuote.objects.prefetch_related(Prefetch("lines", queryset=lines)),
        loan=loan,
        public_id=public_id,
    )


class PaymentViewSet(viewsets.GenericViewSet):
    """Paying, and following a payment to its result."""

    queryset = Payment.objects.all()  # for the schema only; scoped below
    serializer_class = s.PaymentSerializer
    lookup_value_regex = "[^/.]+"

    def get_throttles(self) -> list[Any]:
        throttles = super().get_throttles()
        return [*throttles, PaymentRateThrottle()] if self.action == "create" else throttles

    def _own_payment(self, pk: str) -> Payment:
        scoped = payments_with_timeline(Payment.objects.filter(borrower=borrower_of(self.request)))
        return get_object_or_404(scoped, public_id=_uuid_or_404(pk))

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        request=s.PaymentCreateSerializer,
        responses={201: s.PaymentCreatedSerializer, 200: s.PaymentCreatedSerializer},
    )
    def create(self, request: Request) -> Response:
        """Pay now: 201 with the payment and what to do next; 200 for a replay of the same
        Idempotency-Key and body; 409 for the same key with another body or still in flight."""
        key = _idempotency_key(request)
        body = s.PaymentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        loan = own_loan(request, data["loan"])
        quote = None
        if "quote" in data:
            quote = get_object_or_404(SettlementQuote, public_id=data["quote"], loan=loan)
        method = PaymentMethodType(data["method"])
        card = None
        if "card" in data and method in CARD_METHODS:
            card = get_object_or_404(
                BoundCard,
                pk=data["card"],
                borrower=borrower_of(request),
                is_active=True,
                is_credit=CARD_METHODS[method],
            )
        submitted = payment_submit(
            borrower=borrower_of(request),
            loan=loan,
            amount=data.get("amount") or (quote.total if quote else ZERO),
            method=method,
            key=key,
            now=timezone.now(),
            quote=quote,
            card=card,
        )
        payment = self._own_payment(str(submitted.payment.public_id))
        payment.next_action = submitted.next_action  # type: ignore[attr-defined]
        answer = status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK
        return Response(s.PaymentCreatedSerializer(payment).data, status=answer)

    @extend_schema(parameters=[PUBLIC_ID])
    def retrieve(self, request: Request, pk: str) -> Response:
        """The payment's status and timeline. While it is processing, the channel is asked
        at once (at most every few seconds per attempt), so a lost callback shows up here."""
        payment = self._own_payment(pk)
        if payment.status == PaymentStatus.PROCESSING and self._query_now(payment):
            payment = self._own_payment(pk)
        return Response(s.PaymentSerializer(payment).data)

    def _query_now(self, payment: Payment) -> bool:
        open_attempts = [a for a in payment.attempts.all() if a.status in OPEN_ATTEMPT_STATUSES]
        if not open_attempts:
            return False
        try:
            return attempt_query_now(attempt_id=open_attempts[-1].pk, now=timezone.now())
        except Exception:
            # The read must answer even when the extra query cannot run; the janitor
            # asks again on its own schedule.
            logger.exception("immediate status query for payment %s failed", payment.public_id)
            return False


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not KEY_PATTERN.fullmatch(key):
        raise ValidationError({"Idempotency-Key": [KEY_MESSAGE]}, code="invalid_idempotency_key")
    return key


class DisputeViewSet(viewsets.GenericViewSet):
    """Raise a dispute about a repayment, and follow it."""

    queryset = Dispute.objects.all()  # for the schema only; scoped below
    serializer_class = s.DisputeSerializer
    lookup_value_regex = "[^/.]+"  # its public id, a UUID (checked in get_object)

    def get_queryset(self) -> QuerySet[Dispute]:
        return Dispute.objects.filter(borrower=borrower_of(self.request)).select_related(
            "loan", "payment"
        )

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.DisputeSerializer(page, many=True).data)

    def get_object(self) -> Dispute:
        return get_object_or_404(self.get_queryset(), public_id=_uuid_or_404(self.kwargs["pk"]))

    @extend_schema(parameters=[PUBLIC_ID])
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.DisputeSerializer(self.get_object()).data)

    @extend_schema(request=s.DisputeCreateSerializer, responses={201: s.DisputeSerializer})
    def create(self, request: Request) -> Response:
        """Open a dispute; a `trade_no` from your channel record links the payment."""
        body = s.DisputeCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        loan = own_loan(request, data["loan"])
        payment = None
        if "payment" in data:
            payment = get_object_or_404(
                Payment, public_id=data["payment"], borrower=borrower_of(request)
            )
        dispute = dispute_open(
            borrower=borrower_of(request),
            loan=loan,
            payment=payment,
            category=data["category"],
            description=data["description"],
            trade_no=data.get("trade_no", ""),
            now=timezone.now(),
        )
        return Response(
            s.DisputeSerializer(self.get_queryset().get(pk=dispute.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class NoticeListView(ListAPIView):
    """The notices sent to the borrower, newest first, with how each was delivered."""

    serializer_class = s.NoticeSerializer

    def get_queryset(self) -> Any:
        return notices_in_inbox(user_id=borrower_of(self.request).pk)
