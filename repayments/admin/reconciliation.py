"""Reconciliation runs and the discrepancies they found: evidence to read, not to edit.

Discrepancies are resolved from the support console, which records who and why.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import ReadOnlyAdmin, ReadOnlyInline
from repayments.admin.payments import pretty_json
from repayments.models import Discrepancy, ReconciliationRun


class DiscrepancyInline(ReadOnlyInline):
    model = Discrepancy
    fields = ("kind", "out_trade_no", "status", "channel_amount", "our_amount")
    readonly_fields = fields


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "channel",
        "day",
        "line_count",
        "matched_count",
        "repaired_count",
        "discrepancy_count",
        "finished_at",
        "error",
    )
    list_filter = ("channel",)
    date_hierarchy = "day"
    inlines = [DiscrepancyInline]


@admin.register(Discrepancy)
class DiscrepancyAdmin(ReadOnlyAdmin):
    list_display = (
        "found_at",
        "channel",
        "day",
        "kind",
        "out_trade_no",
        "status",
        "channel_amount",
        "our_amount",
    )
    list_filter = ("status", "kind", "channel")
    search_fields = ("out_trade_no",)
    exclude = ("evidence",)
    readonly_fields = ("safe_evidence",)

    @admin.display(description=_("evidence"))
    def safe_evidence(self, obj: Discrepancy) -> SafeString:
        return pretty_json(obj.evidence)
