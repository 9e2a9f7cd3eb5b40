"""Admin for notices: templates with a live preview; the outbox itself is read-only.

Edits here are audited. This app knows nothing of the audit log (it sits below
the payment domain), so the domain registers how to record an admin change at
start-up; until one is registered, saving refuses rather than go unrecorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from notifications.models import Delivery, Notice, NoticeTemplate, NotificationPreference
from notifications.texts import DEFAULT_TEXTS

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

# (request, obj, action, form) -> None; action is "created", "changed" or "deleted".
ChangeRecorder = Callable[[HttpRequest, models.Model, str, "forms.BaseForm | None"], None]
_change_recorder: list[ChangeRecorder] = []


def register_change_recorder(recorder: ChangeRecorder) -> None:
    """Called once by the domain at start-up with its audit writer."""
    _change_recorder[:] = [recorder]


def _record(request: HttpRequest, obj: models.Model, action: str, form: Any) -> None:
    if not _change_recorder:
        raise ImproperlyConfigured(
            "no admin change recorder registered; refusing an unaudited edit"
        )
    _change_recorder[0](request, obj, action, form)


class RecordedAdmin(admin.ModelAdmin):
    """Saves and deletes go through the registered recorder, in the admin's transaction."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _record(request, obj, "changed" if change else "created", form)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        _record(request, obj, "deleted", None)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # Django does not wrap the bulk action in a transaction; make it all-or-nothing.
        with transaction.atomic():
            for obj in queryset:
                _record(request, obj, "deleted", None)
            super().delete_queryset(request, queryset)


class _Sample(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # an unknown placeholder stays visible in the preview


def preview_text(text: str) -> str:
    """The template filled with example values, the way the dispatcher fills it."""
    return text.format_map(_Sample(SAMPLE_PARAMS))


class NoticeTemplateForm(forms.ModelForm):
    class Meta:
        model = NoticeTemplate
        fields = ("kind", "language", "channel", "text")

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        try:
            preview_text(text)
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            # A broken template would fail every send of its kind; refuse it here.
            raise forms.ValidationError(
                _("The text cannot be filled in: %(error)s. Placeholders look like {amount}."),
                params={"error": exc},
            ) from exc
        return text


@admin.register(NoticeTemplate)
class NoticeTemplateAdmin(RecordedAdmin):
    form = NoticeTemplateForm
    list_display = ("kind", "language", "channel", "updated_at")
    list_filter = ("kind", "language", "channel")
    readonly_fields = ("preview", "built_in_text")
    fields = ("kind", "language", "channel", "text", "preview", "built_in_text")

    @admin.display(description=_("built-in text (used when no template exists)"))
    def built_in_text(self, obj: NoticeTemplate) -> str:
        return DEFAULT_TEXTS.get((obj.kind, obj.language), "—") if obj.kind else "—"

    @admin.display(description=_("preview with example values"))
    def preview(self, obj: NoticeTemplate) -> str:
        if not obj.text:
            return "—"
        try:
            return preview_text(obj.text)
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            return f"{_('template error')}: {exc}"


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("channel", "provider", "status", "provider_message_id", "error", "attempted_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(RecordedAdmin):
    list_display = ("user", "language", "channel_order", "quiet_start_hour", "quiet_end_hour")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
