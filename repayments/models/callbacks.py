"""The callback inbox: every channel notification, stored raw before anything else."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.models.payments import Channel, PaymentAttempt


class CallbackStatus(models.TextChoices):
    RECEIVED = "received", _("Stored, not yet processed")
    REJECTED = "rejected", _("Failed verification")
    QUARANTINED = "quarantined", _("Quarantined: not understood")
    PROCESSED = "processed", _("Processed")
    UNMATCHED = "unmatched", _("No such order of ours")
    HELD = "held", _("Held for review")


class InboundCallbackRecord(models.Model):
    """One request to ``/callbacks/<channel>/`` exactly as it arrived.

    The row is committed before the channel gets its acknowledgement, so a
    crash at any later point loses nothing: the sweeper finds rows still
    ``received`` and processes them again.
    """

    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices)
    body = models.BinaryField(_("raw body"))
    headers = models.JSONField(_("headers"), default=dict)
    remote_addr = models.GenericIPAddressField(_("remote address"), null=True, blank=True)
    received_at = models.DateTimeField(_("received at"))
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=CallbackStatus.choices,
        default=CallbackStatus.RECEIVED,
    )
    out_trade_no = models.CharField(_("merchant order number"), max_length=64, blank=True)
    reported_status = models.CharField(_("reported status"), max_length=20, blank=True)
    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="callbacks",
        verbose_name=_("payment attempt"),
    )
    error = models.TextField(_("error"), blank=True)
    tries = models.PositiveIntegerField(_("processing tries"), default=0)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("inbound callback")
        verbose_name_plural = _("inbound callbacks")
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["status", "received_at"]),
            models.Index(fields=["out_trade_no"]),
            # The rows still to process, oldest first, for the batch claim: the inbox
            # keeps every callback for audit, so without it the claim walks them all.
            models.Index(
                fields=["id"],
                condition=Q(status=CallbackStatus.RECEIVED),
                name="callback_inbox_to_process",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.pk} {self.status}"
