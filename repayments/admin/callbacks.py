"""The callback inbox: every callback as received, read-only; quarantined ones replayed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import ReadOnlyAdmin, acting_user
from repayments.admin.masking import redact_body
from repayments.admin.payments import pretty_json
from repayments.models import CallbackStatus, InboundCallbackRecord
from repayments.services.callbacks import callbacks_replay


@admin.register(InboundCallbackRecord)
class InboundCallbackAdmin(ReadOnlyAdmin):
    """Bodies are shown for debugging a changed format, with secrets and card numbers
    masked; replaying is a service call (audited there), not an edit of the row."""

    list_display = (
        "id",
        "received_at",
        "channel",
        "status",
        "out_trade_no",
        "reported_status",
        "tries",
        "short_error",
    )
    list_filter = ("status", "channel")
    search_fields = ("out_trade_no",)
    date_hierarchy = "received_at"
    exclude = ("body", "headers")
    readonly_fields = ("raw_body", "safe_headers")
    actions = ["replay"]

    @admin.display(description=_("error"))
    def short_error(self, obj: InboundCallbackRecord) -> str:
        return obj.error[:80]

    @admin.display(description=_("raw body"))
    def raw_body(self, obj: InboundCallbackRecord) -> SafeString:
        return format_html("<pre>{}</pre>", redact_body(bytes(obj.body)))

    @admin.display(description=_("headers"))
    def safe_headers(self, obj: InboundCallbackRecord) -> SafeString:
        return pretty_json(obj.headers)

    def has_replay_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Replay can move money on our books: admins, or staff given it explicitly.
        return request.user.has_perm("repayments.change_inboundcallbackrecord")

    @admin.action(
        description=_("Replay selected quarantined or held callbacks"), permissions=["replay"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundCallbackRecord]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        outcomes = callbacks_replay(
            now=timezone.now(),
            statuses=[CallbackStatus.QUARANTINED, CallbackStatus.HELD],
            ids=ids,
            actor=acting_user(request),
        )
        summary = ", ".join(f"{status}: {n}" for status, n in sorted(outcomes.items()))
        self.message_user(request, _("Replayed: %s") % (summary or _("nothing to replay")))
