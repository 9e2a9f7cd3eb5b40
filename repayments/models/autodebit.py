"""Scheduled withholding: one row per installment per due day, claimed by workers."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from repayments.models.loans import Installment, Loan
from repayments.models.payments import Payment


class DebitStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting for its time")
    IN_FLIGHT = "in_flight", _("Being sent")
    SUCCEEDED = "succeeded", _("Collected")
    HANDED_OFF = "handed_off", _("Waiting for the bank's result")
    GAVE_UP = "gave_up", _("Not collected today")
    SKIPPED = "skipped", _("Nothing to collect")


class ScheduledDebit(models.Model):
    """Due work lives here, not in broker ETAs: beat only wakes the claimers."""

    installment = models.ForeignKey(Installment, on_delete=models.PROTECT, related_name="debits")
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="debits")
    run_date = models.DateField(_("run date"))
    status = models.CharField(
        _("status"), max_length=20, choices=DebitStatus.choices, default=DebitStatus.WAITING
    )
    tries = models.PositiveSmallIntegerField(_("tries"), default=0)
    next_try_at = models.DateTimeField(_("next try at"))
    card_index = models.PositiveSmallIntegerField(default=0)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True)
    last_failure_code = models.CharField(_("last failure"), max_length=64, blank=True)
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("scheduled debit")
        verbose_name_plural = _("scheduled debits")
        constraints = [
            models.UniqueConstraint(
                fields=["installment", "run_date"], name="one_scheduled_debit_per_day"
            )
        ]
        indexes = [models.Index(fields=["status", "next_try_at"])]

    def __str__(self) -> str:
        return f"{self.installment} {self.run_date} {self.status}"
