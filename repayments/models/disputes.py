"""Disputes: a borrower says a repayment is missing or wrong; support resolves it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.models.loans import Loan
from repayments.models.payments import Payment


class DisputeCategory(models.TextChoices):
    PAID_NOT_SHOWN = "paid_not_shown", _("Paid, but the repayment does not show")
    AMOUNT_MISMATCH = "amount_mismatch", _("The amount posted does not match")
    CHARGED_TWICE = "charged_twice", _("I was charged twice")
    WRONG_MESSAGE = "wrong_message", _("I got a wrong message")
    OTHER = "other", _("Something else")


class DisputeStatus(models.TextChoices):
    OPEN = "open", _("Open")
    IN_PROGRESS = "in_progress", _("Being handled")
    RESOLVED = "resolved", _("Resolved")
    REJECTED = "rejected", _("Rejected")


OPEN_DISPUTE_STATUSES = (DisputeStatus.OPEN, DisputeStatus.IN_PROGRESS)


class DisputeResolution(models.TextChoices):
    PAID_CONFIRMED = "paid_confirmed", _("Payment confirmed and posted")
    REFUNDED = "refunded", _("Refunded")
    REJECTED = "rejected", _("Rejected, with an explanation")


class Dispute(models.Model):
    # Used in URLs, so case numbers cannot be guessed or counted.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    borrower = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="disputes",
        verbose_name=_("borrower"),
    )
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, related_name="disputes", verbose_name=_("loan")
    )
    # Linked when the borrower names it, or found from a trade number they give.
    payment = models.ForeignKey(
        Payment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="disputes",
        verbose_name=_("payment"),
    )
    category = models.CharField(_("category"), max_length=20, choices=DisputeCategory.choices)
    description = models.TextField(_("description"), max_length=2000)
    # As the borrower typed it from their Alipay/WeChat/bank record.
    channel_trade_no = models.CharField(_("channel transaction number"), max_length=64, blank=True)
    # Checked by content before it is stored; served only through ownership-checked views.
    screenshot = models.FileField(
        _("screenshot"), upload_to="disputes/%Y/%m/", blank=True, max_length=200
    )
    status = models.CharField(
        _("status"), max_length=20, choices=DisputeStatus.choices, default=DisputeStatus.OPEN
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assigned_disputes",
        verbose_name=_("assigned to"),
    )
    # The first answer the borrower could see: the SLA clock stops here.
    first_response_at = models.DateTimeField(_("first response at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolution = models.CharField(
        _("resolution"), max_length=20, choices=DisputeResolution.choices, blank=True
    )
    resolution_note = models.TextField(_("resolution note"), blank=True)
    created_at = models.DateTimeField(_("created at"))
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[DisputeStatus.OPEN, DisputeStatus.IN_PROGRESS])
                | ~Q(resolution_note=""),
                name="dispute_closed_with_note",
                violation_error_message=_("A resolved or rejected dispute needs a note."),
            ),
            # Open cases have no outcome; closed ones have one and a time.
            models.CheckConstraint(
                condition=Q(
                    status__in=[DisputeStatus.OPEN, DisputeStatus.IN_PROGRESS],
                    resolution="",
                    resolved_at__isnull=True,
                )
                | Q(
                    status__in=[DisputeStatus.RESOLVED, DisputeStatus.REJECTED],
                    resolved_at__isnull=False,
                )
                & ~Q(resolution=""),
                name="dispute_resolution_matches_status",
                violation_error_message=_("Only a closed dispute has a resolution."),
            ),
        ]
        indexes = [
            models.Index(fields=["borrower", "-created_at"]),
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=["open", "in_progress"]),
                name="open_disputes_by_age",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_number} {self.category} {self.status}"

    @property
    def case_number(self) -> str:
        """Short reference for the borrower and the phone (first 8 hex digits)."""
        return self.public_id.hex[:8].upper()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_DISPUTE_STATUSES


class DisputeMessage(models.Model):
    """One message on a case: from the borrower, an agent, or the system.

    ``internal`` notes are for staff only and never reach the borrower.
    """

    dispute = models.ForeignKey(
        Dispute, on_delete=models.PROTECT, related_name="messages", verbose_name=_("dispute")
    )
    # Null for the system (e.g. auto-resolved by a late callback).
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="dispute_messages",
        verbose_name=_("author"),
    )
    body = models.TextField(_("message"), max_length=2000)
    internal = models.BooleanField(_("internal note"), default=False)
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("dispute message")
        verbose_name_plural = _("dispute messages")
        ordering = ["dispute_id", "created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(body=""), name="dispute_message_not_empty")
        ]

    def __str__(self) -> str:
        return f"{self.dispute_id} {'internal' if self.internal else 'public'} {self.created_at}"
