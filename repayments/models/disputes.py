"""Disputes: a borrower says a repayment is missing or wrong; support resolves it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.models.loans import Loan
from repayments.models.payments import Payment


class DisputeCategory(models.TextChoices):
    PAID_NOT_SHOWN = "paid_not_shown", _("Paid, but the repayment does not show")
    AMOUNT_MISMATCH = "amount_mismatch", _("The amount posted does not match")
    OTHER = "other", _("Something else")


class DisputeStatus(models.TextChoices):
    OPEN = "open", _("Open")
    IN_PROGRESS = "in_progress", _("Being handled")
    RESOLVED = "resolved", _("Resolved")
    REJECTED = "rejected", _("Rejected")


class Dispute(models.Model):
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
    status = models.CharField(
        _("status"), max_length=20, choices=DisputeStatus.choices, default=DisputeStatus.OPEN
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
            )
        ]
        indexes = [models.Index(fields=["borrower", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.loan} {self.category} {self.status}"
