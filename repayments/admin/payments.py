"""Payments and their ledgers: attempts, the event timeline, allocations, scheduled
debits and the batches withholdings went out in.

All read-only, superusers included: a payment changes state only through the
payment services, which check the transition and write the audit entry.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import ReadOnlyAdmin, ReadOnlyInline
from repayments.admin.masking import redact_mapping
from repayments.models import (
    Allocation,
    DebitBatch,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    ScheduledDebit,
)
from repayments.models.payments import ATTEMPT_STATUS_LABELS


def pretty_json(value: object) -> SafeString:
    text = json.dumps(redact_mapping(value), ensure_ascii=False, indent=2, default=str)
    return format_html("<pre>{}</pre>", text)


class AttemptInline(ReadOnlyInline):
    model = PaymentAttempt
    fields = ("out_trade_no", "channel", "method_type", "status", "accepted_at", "failure_code")
    readonly_fields = fields


class EventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = ("occurred_at", "kind", "from_status", "to_status", "summary")
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "loan", "amount", "purpose", "status", "created_at", "value_at")
    list_filter = ("status", "purpose", "initiated_by")
    search_fields = (
        "public_id",
        "loan__contract_number",
        "attempts__out_trade_no",
        "borrower__phone",
    )
    list_select_related = ("loan",)
    date_hierarchy = "created_at"
    exclude = ("request_fingerprint",)
    inlines = [AttemptInline, EventInline]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "out_trade_no",
        "channel",
        "method_type",
        "amount",
        "status",
        "needs_review",
        "query_count",
        "next_query_at",
        "created_at",
    )
    list_filter = ("needs_review", "channel", "status", "method_type")
    search_fields = ("out_trade_no", "channel_trade_no", "debit_batch__batch_no")
    raw_id_fields = ("debit_batch",)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "payment", "kind", "from_status", "to_status", "summary")
    list_filter = ("kind",)
    list_select_related = ("payment",)
    search_fields = ("payment__public_id",)
    exclude = ("data",)
    readonly_fields = ("details",)

    @admin.display(description=_("details"))
    def details(self, obj: PaymentEvent) -> SafeString:
        return pretty_json(obj.data)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ("payment", "installment", "component", "amount", "value_date")
    list_filter = ("component",)
    list_select_related = ("payment", "installment")


@admin.register(ScheduledDebit)
class ScheduledDebitAdmin(ReadOnlyAdmin):
    list_display = (
        "run_date",
        "loan",
        "installment",
        "status",
        "tries",
        "next_try_at",
        "last_failure_code",
    )
    list_filter = ("status", "run_date")
    list_select_related = ("loan", "installment")
    search_fields = ("loan__contract_number",)


@admin.register(DebitBatch)
class DebitBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "placed_on",
        "batch_no",
        "channel",
        "line_count",
        "total_amount",
        "placed_at",
    )
    list_filter = ("channel", "placed_on")
    search_fields = ("batch_no", "attempts__out_trade_no")
    date_hierarchy = "placed_on"
    readonly_fields = ("line_statuses",)

    @admin.display(description=_("lines by status"))
    def line_statuses(self, obj: DebitBatch) -> str:
        counts = obj.attempts.order_by("status").values("status").annotate(lines=Count("pk"))
        return ", ".join(
            f"{ATTEMPT_STATUS_LABELS.get(row['status'], row['status'])}: {row['lines']}"
            for row in counts
        )
