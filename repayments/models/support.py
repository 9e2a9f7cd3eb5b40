"""Support console records: refund requests (maker-checker) and internal notes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from repayments.models.payments import Payment, PaymentAttempt


class RefundRequestStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for a supervisor")
    REJECTED = "rejected", _("Rejected by a supervisor")
    APPROVED = "approved", _("Approved, refund being sent")
    REFUNDED = "refunded", _("Refunded")
    REFUND_FAILED = "refund_failed", _("Refund not confirmed")


LIVE_REFUND_REQUEST_STATUSES = (
    RefundRequestStatus.PENDING,
    RefundRequestStatus.APPROVED,
    RefundRequestStatus.REFUNDED,
)


class RefundRequest(models.Model):
    """An agent asks to refund a duplicate charge; a different supervisor decides.

    The permissions below are the support console's: roles get them through their
    groups (``repayments.services.users.ROLE_PERMISSIONS``).
    """

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refund_requests", verbose_name=_("payment")
    )
    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.PROTECT,
        related_name="refund_requests",
        verbose_name=_("payment attempt"),
    )
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=RefundRequestStatus.choices,
        default=RefundRequestStatus.PENDING,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="refund_requests_made",
        verbose_name=_("requested by"),
    )
    reason = models.TextField(_("reason"), max_length=1000)
    requested_at = models.DateTimeField(_("requested at"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="refund_requests_decided",
        verbose_name=_("decided by"),
    )
    decision_note = models.TextField(_("decision note"), blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("refund request")
        verbose_name_plural = _("refund requests")
        ordering = ["-requested_at", "-id"]
        permissions = [
            ("use_support_console", _("Can use the support console")),
            (
                "act_in_support_console",
                _("Can query channels, resend notices, resolve disputes and request refunds"),
            ),
            ("approve_refundrequest", _("Can approve refund requests")),
            ("correct_attempt_review", _("Can mark a manual-review attempt as checked")),
        ]
        constraints = [
            # Maker-checker, as the last line of defence behind the service's check.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="refund_request_not_self_decided",
                violation_error_message=_("Nobody can decide their own refund request."),
            ),
            models.UniqueConstraint(
                fields=["attempt"],
                condition=Q(status__in=["pending", "approved", "refunded"]),
                name="one_live_refund_request_per_attempt",
                violation_error_message=_("This charge already has a refund request."),
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.attempt_id} {self.status}"


class SupportNote(models.Model):
    """An internal note on a payment: staff only, never shown to the borrower."""

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="support_notes", verbose_name=_("payment")
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="support_notes",
        verbose_name=_("author"),
    )
    body = models.TextField(_("note"), max_length=2000)
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("internal note")
        verbose_name_plural = _("internal notes")
        ordering = ["payment_id", "created_at", "id"]
        constraints = [models.CheckConstraint(condition=~Q(body=""), name="support_note_not_empty")]

    def __str__(self) -> str:
        return f"note {self.payment_id} {self.created_at}"


class CalendarDayKind(models.TextChoices):
    HOLIDAY = "holiday", _("Public holiday (office closed)")
    WORKING_DAY = "working_day", _("Weekend day worked (调休)")


class CalendarDay(models.Model):
    """A day that differs from the usual Monday-to-Friday week, for the support SLA
    clock. Admins enter each year's official holiday schedule when it is published."""

    day = models.DateField(_("day"), unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=CalendarDayKind.choices)
    name = models.CharField(
        _("name"), max_length=60, blank=True, help_text=_("E.g. National Day (国庆节).")
    )

    class Meta:
        ordering = ["day"]
        verbose_name = _("support calendar day")
        verbose_name_plural = _("support calendar days")

    def __str__(self) -> str:
        return f"{self.day.isoformat()} {self.get_kind_display()} {self.name}".rstrip()
