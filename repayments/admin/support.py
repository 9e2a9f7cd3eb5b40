"""The support console's own records, for looking up. They are created and decided
in the console (maker-checker, audited), so the admin only shows them. The support
calendar (public holidays, weekend days worked) is kept here, every edit audited."""

from __future__ import annotations

from django.contrib import admin

from repayments.admin.base import AuditedAdmin, ReadOnlyAdmin, ReadOnlyInline
from repayments.models import CalendarDay, DisputeMessage, RefundRequest, SupportNote


@admin.register(RefundRequest)
class RefundRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "requested_at",
        "payment",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
    )
    list_filter = ("status",)
    list_select_related = ("payment", "requested_by", "decided_by")
    search_fields = ("payment__attempts__out_trade_no", "reason")
    date_hierarchy = "requested_at"


@admin.register(SupportNote)
class SupportNoteAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "payment", "author")
    list_select_related = ("payment", "author")
    date_hierarchy = "created_at"


class DisputeMessageInline(ReadOnlyInline):
    model = DisputeMessage
    fields = ("created_at", "author", "internal", "body")
    readonly_fields = fields


@admin.register(CalendarDay)
class CalendarDayAdmin(AuditedAdmin):
    list_display = ("day", "kind", "name")
    list_filter = ("kind",)
    date_hierarchy = "day"
