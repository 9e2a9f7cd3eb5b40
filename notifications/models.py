"""The notice outbox, its deliveries, templates and borrower preferences.

A notice row is written in the same transaction as the state change it
announces; the dispatcher sends it later, after checking that the state still
holds. ``notifications`` never imports the payment domain: it asks a state
reader that the domain registers (see ``notifications.subjects``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class NoticeKind(models.TextChoices):
    PAYMENT_PROCESSING = "payment_processing", _("Payment received, being confirmed")
    PAYMENT_SUCCEEDED = "payment_succeeded", _("Payment succeeded")
    PAYMENT_FAILED = "payment_failed", _("Payment failed")
    CORRECTION = "correction", _("Correction")
    DUE_REMINDER = "due_reminder", _("Upcoming due date")
    OVERDUE = "overdue", _("Overdue")
    QUOTE_ISSUED = "quote_issued", _("Settlement quote issued")
    DISPUTE_UPDATE = "dispute_update", _("Dispute update")


class NoticeStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENDING = "sending", _("Being sent")
    DELIVERED = "delivered", _("Delivered")
    SUPERSEDED = "superseded", _("Superseded: no longer true")
    FAILED = "failed", _("Could not be delivered")


# Rows that still count for "one delivered notice per (subject, state, audience)".
LIVE_STATUSES = (NoticeStatus.PENDING, NoticeStatus.SENDING, NoticeStatus.DELIVERED)


class DeliveryChannel(models.TextChoices):
    SMS = "sms", _("SMS")
    PUSH = "push", _("Push")
    IN_APP = "in_app", _("In-app inbox")


class Notice(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="notices",
        verbose_name=_("recipient"),
    )
    kind = models.CharField(_("kind"), max_length=30, choices=NoticeKind.choices)
    # What the notice is about and the state it announces, re-checked at send time.
    subject_type = models.CharField(_("subject type"), max_length=20)
    subject_id = models.BigIntegerField(_("subject id"))
    announced_state = models.CharField(_("announced state"), max_length=20, blank=True)
    # subject, episode (e.g. the attempt) and state: one live notice per key.
    dedupe_key = models.CharField(_("dedupe key"), max_length=120)
    params = models.JSONField(_("template parameters"), default=dict)
    language = models.CharField(_("language"), max_length=10, default="zh-hans")
    body = models.TextField(_("text as sent"), blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=NoticeStatus.choices, default=NoticeStatus.PENDING
    )
    status_reason = models.CharField(_("status reason"), max_length=200, blank=True)
    # Failure notices wait out a settle window; retries back off.
    not_before = models.DateTimeField(_("not before"))
    claimed_until = models.DateTimeField(null=True, blank=True)
    tries = models.PositiveSmallIntegerField(_("tries"), default=0)
    corrects = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="correction",
        verbose_name=_("corrects"),
    )
    # When the state it announces was reached: the start of "state change to delivered".
    state_changed_at = models.DateTimeField(_("state changed at"))
    created_at = models.DateTimeField(_("created at"))
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notice")
        verbose_name_plural = _("notices")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dedupe_key"],
                condition=Q(status__in=[s.value for s in LIVE_STATUSES]),
                name="one_live_notice_per_key",
            )
        ]
        indexes = [
            models.Index(fields=["status", "not_before"]),
            models.Index(fields=["subject_type", "subject_id"]),
            models.Index(fields=["recipient", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_type}:{self.subject_id} {self.status}"


class DeliveryStatus(models.TextChoices):
    SENT = "sent", _("Sent, waiting for receipt")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class Delivery(models.Model):
    """One try to put a notice in front of the borrower through one channel."""

    notice = models.ForeignKey(Notice, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(_("channel"), max_length=10, choices=DeliveryChannel.choices)
    provider = models.CharField(_("provider"), max_length=30)
    status = models.CharField(_("status"), max_length=20, choices=DeliveryStatus.choices)
    provider_message_id = models.CharField(_("provider message id"), max_length=100, blank=True)
    error = models.CharField(_("error"), max_length=200, blank=True)
    attempted_at = models.DateTimeField(_("attempted at"))
    receipt_at = models.DateTimeField(_("receipt at"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["notice_id", "id"]
        indexes = [models.Index(fields=["provider", "provider_message_id"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.status}"


class NoticeTemplate(models.Model):
    """Admin-editable text for one kind, language and channel (``{name}`` placeholders)."""

    kind = models.CharField(_("kind"), max_length=30, choices=NoticeKind.choices)
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    channel = models.CharField(_("channel"), max_length=10, choices=DeliveryChannel.choices)
    text = models.TextField(_("text"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("notice template")
        verbose_name_plural = _("notice templates")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "language", "channel"], name="one_template_per_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.language} {self.channel}"


class NotificationPreference(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    # External channels in the order to try; the in-app inbox always receives too.
    channel_order = models.JSONField(_("channel order"), default=list)
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default="zh-hans"
    )
    # Reminders wait until quiet hours end; payment results never do.
    quiet_start_hour = models.PositiveSmallIntegerField(_("quiet hours start"), default=22)
    quiet_end_hour = models.PositiveSmallIntegerField(_("quiet hours end"), default=8)

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")

    def __str__(self) -> str:
        return str(self.user_id)
