"""API representations: money as two-decimal strings, times ISO 8601 with offset,
enums as lowercase strings. Serializers shape data; they hold no business rule."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import DeliveryChannel, DeliveryStatus, Notice, NoticeKind, NoticeStatus
from repayments.domain.allocation import Component
from repayments.domain.availability import Reason
from repayments.domain.money import InvalidAmount, parse_amount
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Channel,
    DisputeCategory,
    DisputeStatus,
    EventKind,
    LoanStatus,
    PaymentMethodType,
    PaymentPurpose,
)
from repayments.models.settlement import COMPONENT_LABELS

AMOUNT_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
AMOUNT_RE = re.compile(AMOUNT_PATTERN)
INSTALLMENT_STATUSES = ("paid", "partially_paid", "overdue", "upcoming")


def choices(enum: Any) -> list[tuple[str, Any]]:
    """An enum's choices as ENUM_NAME_OVERRIDES sees them, so the schema names it once."""
    if hasattr(enum, "choices"):
        return list(enum.choices)
    return [(member.value, member.name) for member in enum]


class Money(serializers.DecimalField):
    """Yuan as a string with exactly two decimals: ``"2967.99"``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=14, decimal_places=2, coerce_to_string=True, **kwargs)


@extend_schema_field({"type": "string", "pattern": AMOUNT_PATTERN, "example": "2967.99"})
class AmountInput(serializers.Field):
    """An amount sent by a client: a string, parsed strictly (no floats, no third decimal)."""

    default_error_messages = {
        "invalid_amount": _(
            "Enter an amount in yuan with at most two decimal places, for example 2967.99."
        )
    }

    def to_internal_value(self, data: Any) -> Decimal:
        # Plain decimal text only (no exponent, no sign), as the schema documents.
        if not isinstance(data, str) or not AMOUNT_RE.fullmatch(data):
            self.fail("invalid_amount")
        try:
            return parse_amount(data)
        except InvalidAmount:
            self.fail("invalid_amount")

    def to_representation(self, value: Any) -> str:
        return f"{value:.2f}"


# --- Errors ---------------------------------------------------------------------------


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="Field name; nested fields joined with dots.")
    code = serializers.CharField(help_text="Machine-readable reason.")
    message = serializers.CharField(help_text="Translated message.")


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, the one error shape of this API."""

    type = serializers.CharField(help_text="urn:anxin-repay:problem:<code>")
    title = serializers.CharField(help_text="Translated short summary of the status.")
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="Translated explanation with the next step.")
    code = serializers.CharField(help_text="Stable machine-readable error code.")
    instance = serializers.CharField(required=False, help_text="The request path.")
    # Field names shadowing Serializer/Field attributes are fine at run time (the
    # metaclass collects declared fields); only the stubs object.
    errors = FieldErrorSerializer(many=True, required=False)  # type: ignore[assignment]
    reason_code = serializers.ChoiceField(
        choices=choices(Reason),
        required=False,
        help_text="With method_unavailable: why the method cannot be used now.",
    )


# --- Auth -----------------------------------------------------------------------------


class TokenRequestSerializer(serializers.Serializer):
    phone = serializers.CharField(max_length=20, help_text="11-digit mainland mobile number.")
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


# --- Loans ----------------------------------------------------------------------------


class LoanSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    contract_number = serializers.CharField()
    vehicle = serializers.CharField()
    plate_number = serializers.CharField()
    product = serializers.CharField(source="product.name")
    principal = Money()
    outstanding_principal = Money()
    annual_rate_percent = serializers.DecimalField(
        max_digits=7, decimal_places=4, coerce_to_string=True
    )
    term_months = serializers.IntegerField()
    start_date = serializers.DateField()
    status = serializers.ChoiceField(choices=choices(LoanStatus))
    is_overdue = serializers.BooleanField()
    installments_left = serializers.IntegerField()
    next_due_date = serializers.DateField(allow_null=True)
    next_due_amount = Money(allow_null=True)
    credit_balance = Money()


class InstallmentSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    due_date = serializers.DateField()
    principal = Money(source="principal_due")
    interest = Money(source="interest_due")
    fee = Money(source="fee_due")
    penalty = Money(source="penalty_due")
    total = Money(source="total_due")
    paid = Money(source="total_paid")
    remaining = Money()
    status = serializers.ChoiceField(choices=INSTALLMENT_STATUSES)
    paid_value_date = serializers.DateField(allow_null=True)
    paid_on_time = serializers.BooleanField(allow_null=True)


class ScheduleSerializer(serializers.Serializer):
    loan = serializers.IntegerField()
    installments = InstallmentSerializer(many=True)


# --- Payments -------------------------------------------------------------------------


class AttemptSerializer(serializers.Serializer):
    out_trade_no = serializers.CharField()
    channel_trade_no = serializers.CharField()
    channel = serializers.ChoiceField(choices=choices(Channel))
    method = serializers.ChoiceField(source="method_type", choices=choices(PaymentMethodType))
    amount = Money()
    status = serializers.ChoiceField(choices=choices(AttemptStatus))
    failure_code = serializers.CharField()
    failure_message = serializers.CharField()
    created_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)


class EventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=choices(EventKind))
    label = serializers.CharField(source="get_kind_display")  # type: ignore[assignment]
    summary = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    out_trade_no = serializers.CharField(source="attempt.out_trade_no", allow_null=True)
    occurred_at = serializers.DateTimeField()


class PaymentSerializer(serializers.Serializer):
    """A payment with its attempts and timeline; ``method``, ``channel``, ``out_trade_no``
    and ``channel_trade_no`` are the latest attempt's (null before the first)."""

    id = serializers.UUIDField(source="public_id")
    loan = serializers.IntegerField(source="loan_id")
    amount = Money()
    purpose = serializers.ChoiceField(choices=choices(PaymentPurpose))
    status = serializers.ChoiceField(choices=choices(PaymentStatus))
    status_label = serializers.CharField(source="get_status_display")
    method = serializers.SerializerMethodField()
    channel = serializers.SerializerMethodField()
    out_trade_no = serializers.SerializerMethodField()
    channel_trade_no = serializers.SerializerMethodField()
    failure_reason = serializers.CharField()
    quote = serializers.UUIDField(source="quote.public_id", allow_null=True)
    created_at = serializers.DateTimeField()
    value_at = serializers.DateTimeField(allow_null=True)
    confirmed_at = serializers.DateTimeField(source="succeeded_at", allow_null=True)
    attempts = AttemptSerializer(many=True)
    timeline = EventSerializer(source="events", many=True)

    def _latest(self, payment: Any) -> Any:
        attempts = list(payment.attempts.all())  # prefetched, oldest first
        return attempts[-1] if attempts else None

    @extend_schema_field(
        serializers.ChoiceField(choices=choices(PaymentMethodType), allow_null=True)
    )
    def get_method(self, payment: Any) -> str | None:
        latest = self._latest(payment)
        return latest.method_type if latest else None

    @extend_schema_field(serializers.ChoiceField(choices=choices(Channel), allow_null=True))
    def get_channel(self, payment: Any) -> str | None:
        latest = self._latest(payment)
        return latest.channel if latest else None

    def get_out_trade_no(self, payment: Any) -> str | None:
        latest = self._latest(payment)
        return latest.out_trade_no if latest else None

    def get_channel_trade_no(self, payment: Any) -> str | None:
        latest = self._latest(payment)
        return (latest.channel_trade_no or None) if latest else None


class NextActionSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["redirect", "qr_code", "none"],
        help_text="redirect: open `value` (a URL); qr_code: show `value` as a QR code; "
        "none: nothing to do (withholding).",
    )
    value = serializers.CharField(allow_blank=True)


class PaymentCreatedSerializer(PaymentSerializer):
    next_action = NextActionSerializer()


class PaymentCreateSerializer(serializers.Serializer):
    loan = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    amount = AmountInput(required=False, help_text="Required unless `quote` is given.")
    method = serializers.ChoiceField(
        choices=choices(PaymentMethodType),
        help_text="The `method` of an available option from payment-options.",
    )
    quote = serializers.UUIDField(
        required=False, help_text="A settlement quote id: pays exactly the quote's total."
    )
    card = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Bound card id for bank methods; the first usable card when omitted.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "amount" not in attrs and "quote" not in attrs:
            raise serializers.ValidationError(
                {"amount": [_("Give an amount, or a settlement quote.")]}, code="required"
            )
        return attrs


class PaymentOptionSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=choices(PaymentMethodType))
    label = serializers.CharField()  # type: ignore[assignment]
    channel = serializers.ChoiceField(choices=choices(Channel))
    available = serializers.BooleanField()
    reason_code = serializers.ChoiceField(choices=choices(Reason), allow_null=True)
    message = serializers.CharField(
        help_text="Why not, and what to do instead; empty if available."
    )
    recommended = serializers.BooleanField()
    retry_after = serializers.DateTimeField(allow_null=True)
    limit = Money(allow_null=True)


class PaymentOptionsSerializer(serializers.Serializer):
    loan = serializers.IntegerField()
    amount = Money()
    recommended = serializers.ChoiceField(choices=choices(PaymentMethodType), allow_null=True)
    advice = serializers.CharField(help_text="What to do when no method is available.")
    options = PaymentOptionSerializer(many=True)


class PaymentOptionsQuerySerializer(serializers.Serializer):
    amount = AmountInput()


# --- Settlement quotes ----------------------------------------------------------------


class QuoteLineSerializer(serializers.Serializer):
    component = serializers.ChoiceField(choices=[c.value for c in COMPONENT_LABELS])
    label = serializers.SerializerMethodField()  # type: ignore[assignment]
    installment = serializers.IntegerField(source="installment.number", allow_null=True)
    amount = Money()

    def get_label(self, line: Any) -> str:
        return str(COMPONENT_LABELS[Component(line.component)])


class BreakdownRowSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    amount = Money()


class SettlementQuoteSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    loan = serializers.IntegerField(source="loan_id")
    settlement_date = serializers.DateField()
    gross_total = Money()
    credit_applied = Money()
    total = Money()
    computed_at = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    lines = QuoteLineSerializer(many=True)
    breakdown = serializers.SerializerMethodField()

    @extend_schema_field(BreakdownRowSerializer(many=True))
    def get_breakdown(self, quote: Any) -> list[dict[str, Any]]:
        rows = [{"label": label, "amount": amount} for label, amount in quote.breakdown()]
        return BreakdownRowSerializer(rows, many=True).data  # type: ignore[return-value]


class SettlementQuoteCreateSerializer(serializers.Serializer):
    settlement_date = serializers.DateField(
        required=False, help_text="Defaults to today (Asia/Shanghai)."
    )


# --- Disputes -------------------------------------------------------------------------


class DisputeSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField(
        source="case_number", help_text="The short case number to quote to support."
    )
    loan = serializers.IntegerField(source="loan_id")
    contract_number = serializers.CharField(source="loan.contract_number")
    payment = serializers.UUIDField(source="payment.public_id", allow_null=True)
    category = serializers.ChoiceField(choices=choices(DisputeCategory))
    category_label = serializers.CharField(source="get_category_display")
    description = serializers.CharField()
    trade_no = serializers.CharField(source="channel_trade_no")
    status = serializers.ChoiceField(choices=choices(DisputeStatus))
    status_label = serializers.CharField(source="get_status_display")
    resolution_note = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DisputeCreateSerializer(serializers.Serializer):
    loan = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    payment = serializers.UUIDField(required=False, help_text="The payment it concerns, if known.")
    category = serializers.ChoiceField(choices=choices(DisputeCategory))
    description = serializers.CharField(max_length=2000)
    trade_no = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="Our order number or the channel's transaction number, from your "
        "Alipay/WeChat/bank record; used to find the payment.",
    )


# --- Notices --------------------------------------------------------------------------


class DeliverySerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=choices(DeliveryChannel))
    status = serializers.ChoiceField(choices=choices(DeliveryStatus))
    attempted_at = serializers.DateTimeField()
    receipt_at = serializers.DateTimeField(allow_null=True)


class NoticeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=choices(NoticeKind))
    status = serializers.ChoiceField(choices=choices(NoticeStatus))
    text = serializers.CharField(source="body")
    language = serializers.CharField()
    channel = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    deliveries = DeliverySerializer(many=True)

    @extend_schema_field(serializers.ChoiceField(choices=choices(DeliveryChannel), allow_null=True))
    def get_channel(self, notice: Notice) -> str | None:
        """The channel that took the notice (the last delivery that did not fail)."""
        taken = [d for d in notice.deliveries.all() if d.status != DeliveryStatus.FAILED]
        return taken[-1].channel if taken else None
