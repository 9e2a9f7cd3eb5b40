"""The audit log, read-only for everyone: no add, change, delete or bulk delete."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import ReadOnlyAdmin
from repayments.admin.payments import pretty_json
from repayments.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "occurred_at", "actor_label", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor_label", "action")
    # actor_label is the text the hash covers; the actor link itself adds nothing here.
    exclude = ("actor", "data")
    readonly_fields = ("details",)

    @admin.display(description=_("details"))
    def details(self, obj: AuditEntry) -> SafeString:
        return pretty_json(obj.data)
