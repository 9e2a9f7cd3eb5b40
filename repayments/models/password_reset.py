"""One-time SMS codes for resetting a borrower's password.

Only a keyed hash of the code is stored. A row is written for every request,
registered phone or not, so throttling and answers look the same either way.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class PasswordResetCode(models.Model):
    phone = models.CharField(_("mobile number"), max_length=11)
    # NULL when the number is not registered: no code is sent, none can match.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    code_hash = models.CharField(_("code hash"), max_length=128)
    requested_ip = models.GenericIPAddressField(_("requested from"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"))
    expires_at = models.DateTimeField(_("expires at"))
    tries = models.PositiveSmallIntegerField(_("wrong tries"), default=0)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    # Made and texted by a task: started when a code was made, sent once the SMS
    # provider took it. A send that started but never finished is tried again.
    send_started_at = models.DateTimeField(_("code made at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("texted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("password reset code")
        verbose_name_plural = _("password reset codes")
        indexes = [
            models.Index(fields=["phone", "-created_at"]),
            models.Index(fields=["requested_ip", "-created_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")),
                name="reset_code_expires_after_creation",
            )
        ]

    def __str__(self) -> str:
        return f"reset code {self.pk} ({self.created_at:%Y-%m-%d %H:%M})"
