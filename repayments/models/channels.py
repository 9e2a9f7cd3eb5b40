"""Operating settings of each payment channel, kept by admins in Django admin."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.models.loans import money_field
from repayments.models.payments import Channel


class ChannelSetting(models.Model):
    channel = models.CharField(_("channel"), max_length=20, choices=Channel.choices, unique=True)
    is_enabled = models.BooleanField(_("enabled"), default=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=10, help_text=_("Lower numbers are recommended first.")
    )
    single_payment_limit = money_field(_("single-payment limit"))
    maintenance_starts_at = models.DateTimeField(_("maintenance starts"), null=True, blank=True)
    maintenance_ends_at = models.DateTimeField(_("maintenance ends"), null=True, blank=True)

    class Meta:
        verbose_name = _("channel setting")
        verbose_name_plural = _("channel settings")
        ordering = ["priority", "channel"]
        constraints = [
            models.CheckConstraint(
                condition=Q(single_payment_limit__gt=0), name="channel_limit_positive"
            ),
            models.CheckConstraint(
                condition=Q(maintenance_starts_at__isnull=True)
                | Q(maintenance_ends_at__isnull=True)
                | Q(maintenance_ends_at__gt=models.F("maintenance_starts_at")),
                name="channel_maintenance_ends_after_start",
                violation_error_message=_("Maintenance must end after it starts."),
            ),
        ]

    def __str__(self) -> str:
        return self.get_channel_display()
