"""Admin for notices: templates with a live preview; the outbox itself is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from notifications.models import Delivery, Notice, NoticeTemplate, NotificationPreference

# Example values for the preview, shaped like what the services put in a notice.
SAMPLE_PARAMS = {
    "amount": "¥2,967.99",
    "account": "尾号1234",
    "month": "7月",
    "channel": "支付宝",
    "when": "2026-07-05 09:02",
    "installments": "第7期",
    "reason": "银行卡余额不足",
    "alternatives": "支付宝、微信支付",
    "loan": "AX-2026-000123",
    "number": 7,
    "due_date": "2026-07-05",
    "tail": "1234",
    "valid_until": "2026-07-06 23:59",
    "case": "D-1024",
    "status": "已解决",
}


class _Sample(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # an unknown placeholder stays visible in the preview


@admin.register(NoticeTemplate)
class NoticeTemplateAdmin(admin.ModelAdmin):
    list_display = ("kind", "language", "channel", "updated_at")
    list_filter = ("kind", "language", "channel")
    readonly_fields = ("preview",)
    fields = ("kind", "language", "channel", "text", "preview")

    @admin.display(description=_("preview with example values"))
    def preview(self, obj: NoticeTemplate) -> str:
        if not obj.text:
            return "—"
        try:
            return obj.text.format_map(_Sample(SAMPLE_PARAMS))
        except (ValueError, IndexError) as exc:
            return f"{_('template error')}: {exc}"


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("channel", "provider", "status", "provider_message_id", "error", "attempted_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "subject_type",
        "subject_id",
        "announced_state",
        "status",
        "status_reason",
        "delivered_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("dedupe_key",)
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    list_select_related = ("recipient",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "language", "channel_order", "quiet_start_hour", "quiet_end_hour")
    raw_id_fields = ("user",)
