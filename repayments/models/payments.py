"""Payments, their channel attempts, their timeline, and how they were allocated."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.domain.allocation import Component
from repayments.domain.states import OPEN_ATTEMPT_STATUSES, AttemptStatus, PaymentStatus
from repayments.models.loans import ZERO, Installment, Loan, money_field, record_token_field
from repayments.models.products import PaymentMethodType

PAYMENT_STATUS_LABELS = {
    PaymentStatus.CREATED: _("Created"),
    PaymentStatus.PROCESSING: _("Processing"),
    PaymentStatus.SUCCEEDED: _("Succeeded"),
    PaymentStatus.FAILED: _("Failed"),
    PaymentStatus.CANCELLED: _("Cancelled"),
    PaymentStatus.REFUNDED: _("Refunded"),
}
ATTEMPT_STATUS_LABELS = {
    AttemptStatus.SUBMITTING: _("Submitting"),
    AttemptStatus.PENDING: _("Waiting for the channel"),
    AttemptStatus.UNKNOWN: _("Outcome being checked"),
    AttemptStatus.SUCCEEDED: _("Succeeded"),
    AttemptStatus.FAILED: _("Failed"),
    AttemptStatus.CLOSED: _("Closed"),
}


class Channel(models.TextChoices):
    ALIPAY = "alipay", _("Alipay")
    WECHATPAY = "wechatpay", _("WeChat Pay")
    UNIONPAY = "unionpay", _("Bank withholding (UnionPay)")


class PaymentPurpose(models.TextChoices):
    INSTALLMENT = "installment", _("Installment repayment")
    EARLY_SETTLEMENT = "early_settlement", _("Early settlement")


class Initiator(models.TextChoices):
    BORROWER = "borrower", _("Borrower")
    AUTO_DEBIT = "auto_debit", _("Scheduled withholding")
    STAFF = "staff", _("Staff")


class Payment(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, related_name="payments", verbose_name=_("loan")
    )
    # Denormalised owner: scopes idempotency keys and every borrower query.
    borrower = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    amount = money_field(_("amount"))
    record_token = record_token_field()
    purpose = models.CharField(
        _("purpose"),
        max_length=20,
        choices=PaymentPurpose.choices,
        default=PaymentPurpose.INSTALLMENT,
    )
    initiated_by = models.CharField(
        _("initiated by"), max_length=20, choices=Initiator.choices, default=Initiator.BORROWER
    )
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=list(PAYMENT_STATUS_LABELS.items()),
        default=PaymentStatus.CREATED,
    )
    # NULL, not "", when absent: the unique constraint must ignore keyless payments.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    quote = models.ForeignKey(
        "repayments.SettlementQuote", on_delete=models.PROTECT, null=True, blank=True
    )
    # When the channel accepted the money: decides on-time (rule 7).
    value_at = models.DateTimeField(_("accepted by channel at"), null=True, blank=True)
    succeeded_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    allocated_at = models.DateTimeField(_("allocated at"), null=True, blank=True)
    credit_applied = money_field(_("credit balance used"), default=ZERO)
    credit_added = money_field(_("added to credit balance"), default=ZERO)
    failure_reason = models.CharField(_("failure reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"))
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(credit_applied__gte=0, credit_added__gte=0),
                name="payment_credit_not_negative",
            ),
            models.UniqueConstraint(
                fields=["borrower", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="payment_idempotency_key_unique",
            ),
        ]
        indexes = [models.Index(fields=["loan", "status"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.public_id} {self.amount} {self.status}"


class DebitBatch(models.Model):
    """Withholdings sent to a channel as one batch file (UnionPay 批量代收).

    Its lines are ordinary attempts; the batch only says how they were sent and
    how status sync asks for their results together.
    """

    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    # The channel's batch number: unique per merchant and (Beijing) day.
    batch_no = models.CharField(_("batch number"), max_length=8)
    placed_on = models.DateField(_("placed on"))
    placed_at = models.DateTimeField(_("placed at"))
    # When the file left: UnionPay may take a while to show a batch it holds, and "no
    # such batch" proves nothing until well after this moment (not after placed_at).
    sent_at = models.DateTimeField(_("sent at"))
    # The attempts handed to the batch; a line the adapter refused before sending
    # (an unusable card token) is among them, as a failed attempt.
    line_count = models.PositiveIntegerField(_("lines"))
    total_amount = money_field(_("total amount"))

    class Meta:
        verbose_name = _("debit batch")
        verbose_name_plural = _("debit batches")
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "placed_on", "batch_no"], name="one_batch_number_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.placed_on} #{self.batch_no}"


class PaymentAttempt(models.Model):
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="attempts")
    # Denormalised so the database itself can allow one open attempt per loan.
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="attempts")
    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    method_type = models.CharField(
        _("payment method"), max_length=30, choices=PaymentMethodType.choices
    )
    out_trade_no = models.CharField(_("merchant order number"), max_length=64, unique=True)
    channel_trade_no = models.CharField(_("channel transaction number"), max_length=64, blank=True)
    amount = money_field(_("amount"))
    record_token = record_token_field()
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=list(ATTEMPT_STATUS_LABELS.items()),
        default=AttemptStatus.SUBMITTING,
    )
    accepted_at = models.DateTimeField(_("accepted by channel at"), null=True, blank=True)
    failure_code = models.CharField(_("failure code"), max_length=64, blank=True)
    failure_message = models.CharField(_("failure message"), max_length=200, blank=True)
    # Status sync: when the janitor next asks the channel, and how often it has.
    next_query_at = models.DateTimeField(_("next status query at"), null=True, blank=True)
    query_count = models.PositiveIntegerField(_("status queries"), default=0)
    # Set when the attempt went out as a line of a batch: its results are asked per batch.
    debit_batch = models.ForeignKey(
        DebitBatch,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="attempts",
        verbose_name=_("debit batch"),
    )
    # Past the channel's notify window and still unresolved: support checks by hand.
    needs_review = models.BooleanField(_("needs manual review"), default=False)
    created_at = models.DateTimeField(_("created at"))
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("payment attempt")
        verbose_name_plural = _("payment attempts")
        ordering = ["payment_id", "created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="attempt_amount_positive"),
            models.UniqueConstraint(
                fields=["loan"],
                condition=Q(status__in=sorted(s.value for s in OPEN_ATTEMPT_STATUSES)),
                name="one_open_attempt_per_loan",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_query_at"],
                condition=Q(next_query_at__isnull=False),
                name="attempt_query_due",
            )
        ]

    def __str__(self) -> str:
        return self.out_trade_no

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ATTEMPT_STATUSES


class EventKind(models.TextChoices):
    CREATED = "created", _("Payment created")
    REQUEST = "request", _("Request to channel")
    CALLBACK = "callback", _("Channel callback")
    POLL = "poll", _("Status query")
    SETTLEMENT = "settlement", _("Settlement statement")
    STATE_CHANGE = "state_change", _("Status changed")
    IGNORED = "ignored", _("Ignored late result")
    ALLOCATION = "allocation", _("Allocated to installments")
    REFUND = "refund", _("Refund")
    NOTIFICATION = "notification", _("Notification")
    NOTE = "note", _("Note")


class PaymentEvent(models.Model):
    """Append-only timeline of everything that happened to a payment."""

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="events", verbose_name=_("payment")
    )
    attempt = models.ForeignKey(
        PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=EventKind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    summary = models.CharField(_("summary"), max_length=200)
    data = models.JSONField(_("details"), default=dict, blank=True)
    occurred_at = models.DateTimeField(_("occurred at"))

    class Meta:
        verbose_name = _("payment event")
        verbose_name_plural = _("payment events")
        ordering = ["payment_id", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}"


class Allocation(models.Model):
    """One part of a payment applied to one component of an installment (or the loan)."""

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="allocations", verbose_name=_("payment")
    )
    installment = models.ForeignKey(
        Installment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="allocations",
        verbose_name=_("installment"),
    )
    component = models.CharField(
        _("component"), max_length=30, choices=[(c.value, c.value) for c in Component]
    )
    amount = money_field(_("amount"))
    value_date = models.DateField(_("value date"))
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")
        ordering = ["payment_id", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive"),
            # Exactly-once allocation (rule 3): a second booking of the same
            # payment collides here even if every code-level guard failed.
            models.UniqueConstraint(
                fields=["payment", "installment", "component"],
                name="allocation_once_per_component",
            ),
            models.UniqueConstraint(
                fields=["payment", "component"],
                condition=Q(installment__isnull=True),
                name="allocation_once_per_loan_charge",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.component} {self.amount}"
