"""Disputes, for looking up: they are worked and resolved in the support console,
which records who did what and why."""

from __future__ import annotations

from django.contrib import admin

from repayments.admin.base import ReadOnlyAdmin
from repayments.admin.support import DisputeMessageInline
from repayments.models import Dispute


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "loan",
        "borrower",
        "category",
        "status",
        "assigned_to",
        "payment",
    )
    list_filter = ("status", "category")
    list_select_related = ("loan", "borrower", "payment", "assigned_to")
    search_fields = ("loan__contract_number", "channel_trade_no", "borrower__phone")
    date_hierarchy = "created_at"
    # Screenshots are served only through the console's ownership-checked view.
    exclude = ("screenshot",)
    inlines = (DisputeMessageInline,)
