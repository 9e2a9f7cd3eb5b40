"""Operating settings of each payment channel, kept by admins in Django admin."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
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


class RiskRules(models.Model):
    """The thresholds of the payment risk rules: a single row, kept in admin and
    read by the method list on every request, so a change applies at once."""

    SINGLE_ROW = 1

    max_attempts_per_hour = models.PositiveSmallIntegerField(
        _("attempts per loan per hour"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("More payment attempts than this for one loan within an hour are refused."),
    )
    circuit_min_attempts = models.PositiveSmallIntegerField(
        _("circuit breaker: minimum attempts"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("A channel is judged only after this many attempts in five minutes."),
    )
    circuit_failure_percent = models.PositiveSmallIntegerField(
        _("circuit breaker: unreachable share (%)"),
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text=_("The channel is paused when at least this share could not reach it."),
    )
    circuit_cool_off_seconds = models.PositiveIntegerField(
        _("circuit breaker: pause (seconds)"),
        default=60,
        validators=[MinValueValidator(1)],
        help_text=_("How long a paused channel stays paused after its last unreachable failure."),
    )

    class Meta:
        verbose_name = _("risk rules")
        verbose_name_plural = _("risk rules")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="risk_rules_single_row"),
            models.CheckConstraint(
                condition=Q(max_attempts_per_hour__gte=1)
                & Q(circuit_min_attempts__gte=1)
                & Q(circuit_failure_percent__gte=1)
                & Q(circuit_failure_percent__lte=100)
                & Q(circuit_cool_off_seconds__gte=1),
                name="risk_rules_in_range",
            ),
        ]

    def __str__(self) -> str:
        return str(_("Risk rules"))
