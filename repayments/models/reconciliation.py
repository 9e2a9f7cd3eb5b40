"""Settlement statements from the channels and what comparing them found."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.models.loans import money_field
from repayments.models.payments import Channel, PaymentAttempt


class ReconciliationRun(models.Model):
    """One import of one channel's statement for one day; re-running it changes nothing."""

    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    day = models.DateField(_("statement day"))
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    file_digest = models.CharField(_("statement SHA-256"), max_length=64, blank=True)
    line_count = models.PositiveIntegerField(_("lines"), default=0)
    matched_count = models.PositiveIntegerField(_("matched"), default=0)
    repaired_count = models.PositiveIntegerField(_("repaired"), default=0)
    discrepancy_count = models.PositiveIntegerField(_("discrepancies"), default=0)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")
        ordering = ["-day", "-started_at"]

    def __str__(self) -> str:
        return f"{self.channel} {self.day}"


class DiscrepancyKind(models.TextChoices):
    NOT_CONFIRMED_HERE = "not_confirmed_here", _("Paid at channel, not confirmed here")
    MISSING_AT_CHANNEL = "missing_at_channel", _("Confirmed here, missing at channel")
    AMOUNT_MISMATCH = "amount_mismatch", _("Amount mismatch")
    STATUS_MISMATCH = "status_mismatch", _("Status mismatch")
    DUPLICATE_SUCCESS = "duplicate_success", _("Duplicate success")
    UNKNOWN_ORDER = "unknown_order", _("Unknown order")


class DiscrepancyStatus(models.TextChoices):
    OPEN = "open", _("Open: needs support")
    REPAIRED = "repaired", _("Repaired automatically")
    RESOLVED = "resolved", _("Resolved by support")


class Discrepancy(models.Model):
    """A difference between a channel's statement and our books, with its evidence."""

    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    day = models.DateField(_("statement day"))
    kind = models.CharField(_("kind"), max_length=30, choices=DiscrepancyKind.choices)
    out_trade_no = models.CharField(_("merchant order number"), max_length=64)
    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="discrepancies",
        verbose_name=_("payment attempt"),
    )
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=DiscrepancyStatus.choices,
        default=DiscrepancyStatus.OPEN,
    )
    channel_amount = money_field(_("amount at channel"), null=True, blank=True)
    our_amount = money_field(_("our amount"), null=True, blank=True)
    evidence = models.JSONField(_("evidence"), default=dict)
    run = models.ForeignKey(
        ReconciliationRun, on_delete=models.PROTECT, related_name="discrepancies"
    )
    found_at = models.DateTimeField(_("found at"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("reconciliation discrepancy")
        verbose_name_plural = _("reconciliation discrepancies")
        ordering = ["-found_at", "-id"]
        constraints = [
            # Re-importing a statement finds the same differences: record each once.
            models.UniqueConstraint(
                fields=["channel", "day", "kind", "out_trade_no"],
                name="discrepancy_once_per_statement",
            )
        ]
        indexes = [
            models.Index(fields=["status"], condition=Q(status="open"), name="open_discrepancies")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.out_trade_no}"
