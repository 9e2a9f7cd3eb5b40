"""Channel settings: priority, limits, and maintenance windows borrowers see at once.

The borrower's method list reads these rows on every request (no cache), so a
save here is what the next page load shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import AuditedAdmin, audit_admin_action, describe_value
from repayments.models import ChannelSetting, RiskRules

MAINTENANCE_FIELDS = ("maintenance_starts_at", "maintenance_ends_at")


class ChannelSettingForm(forms.ModelForm):
    start_maintenance_now = forms.BooleanField(
        label=_("start maintenance now"),
        required=False,
        help_text=_("Takes the channel down from this moment until the expected end."),
    )

    class Meta:
        model = ChannelSetting
        fields = (
            "is_enabled",
            "priority",
            "single_payment_limit",
            "start_maintenance_now",
            "maintenance_starts_at",
            "maintenance_ends_at",
        )
        help_texts = {
            "maintenance_ends_at": _(
                "Expected end, shown to borrowers. Leave both dates empty when there is none."
            ),
        }

    @property
    def changed_data(self) -> list[str]:
        changed = list(super().changed_data)
        # "Start now" fills the start in clean(), after Django compared the raw input.
        if self.data.get("start_maintenance_now") and "maintenance_starts_at" not in changed:
            changed.append("maintenance_starts_at")
        return changed

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("start_maintenance_now"):
            cleaned["maintenance_starts_at"] = timezone.now()
        starts, ends = cleaned.get("maintenance_starts_at"), cleaned.get("maintenance_ends_at")
        if starts and not ends and "maintenance_ends_at" not in self.errors:
            # Borrowers are told when to come back; "until further notice" helps nobody.
            self.add_error(
                "maintenance_ends_at", _("Give the expected end of the maintenance window.")
            )
        if ends and not starts and "maintenance_starts_at" not in self.errors:
            self.add_error(
                "maintenance_starts_at",
                _("Give the start of the maintenance window, or tick 'start maintenance now'."),
            )
        return cleaned


@admin.register(ChannelSetting)
class ChannelSettingAdmin(AuditedAdmin):
    """Where operators take a channel down for maintenance or change its priority or limit.

    Channel keys are not here: they come from settings and key files, never the database.
    """

    form = ChannelSettingForm
    list_display = (
        "channel",
        "state",
        "is_enabled",
        "priority",
        "single_payment_limit",
        "maintenance_starts_at",
        "maintenance_ends_at",
    )
    list_editable = ("is_enabled", "priority", "single_payment_limit")
    actions = ["end_maintenance"]

    @admin.display(description=_("state now"))
    def state(self, obj: ChannelSetting) -> str:
        now = timezone.now()
        starts, ends = obj.maintenance_starts_at, obj.maintenance_ends_at
        if not obj.is_enabled:
            return str(_("Switched off"))
        if starts and starts <= now and (ends is None or now < ends):
            when = date_format(timezone.localtime(ends), "Y-m-d H:i") if ends else "?"
            return str(_("Under maintenance until %(when)s") % {"when": when})
        if starts and starts > now:
            when = date_format(timezone.localtime(starts), "Y-m-d H:i")
            return str(_("Maintenance scheduled from %(when)s") % {"when": when})
        return str(_("Available"))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # one row per channel, created by migration

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("End maintenance now"), permissions=["change"])
    def end_maintenance(self, request: HttpRequest, queryset: QuerySet[ChannelSetting]) -> None:
        now = timezone.now()
        ended = 0
        with transaction.atomic():
            for setting in queryset.select_for_update():
                before = {f: getattr(setting, f) for f in MAINTENANCE_FIELDS}
                if not _end_window(setting, now):
                    continue
                setting.save(update_fields=list(MAINTENANCE_FIELDS))
                changes = {
                    f: {
                        "from": describe_value(before[f]),
                        "to": describe_value(getattr(setting, f)),
                    }
                    for f in MAINTENANCE_FIELDS
                }
                audit_admin_action(
                    request, action="maintenance_ended", obj=setting, data={"changes": changes}
                )
                ended += 1
        self.message_user(
            request, _("Maintenance ended for %(count)d channel(s).") % {"count": ended}
        )


def _end_window(setting: ChannelSetting, now: datetime) -> bool:
    """End a running window now, or cancel a scheduled one; False when there is none."""
    starts, ends = setting.maintenance_starts_at, setting.maintenance_ends_at
    if starts is None or (ends is not None and ends <= now):
        return False
    if starts <= now:
        setting.maintenance_ends_at = now
    else:
        setting.maintenance_starts_at = setting.maintenance_ends_at = None
    return True


@admin.register(RiskRules)
class RiskRulesAdmin(AuditedAdmin):
    """The one row of risk thresholds: edited, never added twice or deleted."""

    list_display = (
        "__str__",
        "max_attempts_per_hour",
        "circuit_min_attempts",
        "circuit_failure_percent",
        "circuit_cool_off_seconds",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not RiskRules.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
