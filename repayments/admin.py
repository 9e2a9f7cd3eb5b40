"""Django admin for operations. Money and history are read-only here: changes to
them go through services, never through a form that edits a row directly."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserCreationForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from repayments.models import (
    Allocation,
    AuditEntry,
    BoundCard,
    CallbackStatus,
    ChannelSetting,
    Discrepancy,
    InboundCallbackRecord,
    Installment,
    Loan,
    LoanProduct,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    ReconciliationRun,
    SettlementQuote,
    SettlementQuoteLine,
    User,
)
from repayments.services.audit import audit_append
from repayments.services.callbacks import callbacks_replay


class ReadOnlyAdmin(admin.ModelAdmin):
    """History and ledgers: visible to those allowed, editable by nobody."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedAdmin(admin.ModelAdmin):
    """Operational settings edited here leave an audit entry naming who changed what."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        name = obj._meta.model_name
        audit_append(
            action=f"{name}.changed" if change else f"{name}.created",
            object_type=name,
            object_id=obj.pk,
            now=timezone.now(),
            actor=request.user if isinstance(request.user, User) else None,
            data={"fields": sorted(form.changed_data)},
        )


class StaffCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("username",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = StaffCreationForm
    list_display = ("__str__", "full_name", "masked_phone", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active", "groups")
    search_fields = ("username", "full_name", "phone")
    ordering = ("-date_joined",)
    readonly_fields = ("masked_phone", "id_number_masked", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Person"), {"fields": ("full_name", "masked_phone", "id_number_masked")}),
        (_("Access"), {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "password1", "password2")}),
    )

    @admin.display(description=_("mobile number"))
    def masked_phone(self, obj: User) -> str:
        return obj.masked_phone


@admin.register(LoanProduct)
class LoanProductAdmin(AuditedAdmin):
    list_display = (
        "code",
        "name",
        "amortization_method",
        "annual_rate_percent",
        "term_months",
        "is_active",
    )
    list_filter = ("amortization_method", "is_active")
    search_fields = ("code", "name")


class InstallmentInline(admin.TabularInline):
    model = Installment
    extra = 0
    can_delete = False
    fields = (
        "number",
        "due_date",
        "principal_due",
        "interest_due",
        "fee_due",
        "penalty_due",
        "principal_paid",
        "interest_paid",
        "fee_paid",
        "penalty_paid",
        "paid_value_date",
        "paid_on_time",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Loan)
class LoanAdmin(ReadOnlyAdmin):
    list_display = ("contract_number", "borrower", "vehicle", "principal", "status", "start_date")
    list_filter = ("status", "product", "amortization_method")
    search_fields = ("contract_number", "borrower__phone", "borrower__full_name", "plate_number")
    list_select_related = ("borrower", "product")
    inlines = [InstallmentInline]


class AttemptInline(admin.TabularInline):
    model = PaymentAttempt
    extra = 0
    can_delete = False
    fields = ("out_trade_no", "channel", "method_type", "status", "accepted_at", "failure_code")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(admin.TabularInline):
    model = PaymentEvent
    extra = 0
    can_delete = False
    fields = ("occurred_at", "kind", "from_status", "to_status", "summary")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    search_fields = ("out_trade_no", "channel_trade_no")


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "payment", "kind", "from_status", "to_status", "summary")
    list_filter = ("kind",)
    list_select_related = ("payment",)
    search_fields = ("payment__public_id",)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ("payment", "installment", "component", "amount", "value_date")
    list_filter = ("component",)
    list_select_related = ("payment", "installment")


class QuoteLineInline(admin.TabularInline):
    model = SettlementQuoteLine
    extra = 0
    can_delete = False
    fields = ("position", "installment", "component", "amount")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SettlementQuote)
class SettlementQuoteAdmin(ReadOnlyAdmin):
    list_display = ("loan", "settlement_date", "total", "valid_until", "computed_at")
    search_fields = ("loan__contract_number",)
    inlines = [QuoteLineInline]


@admin.register(BoundCard)
class BoundCardAdmin(admin.ModelAdmin):
    list_display = ("borrower", "bank_name", "card_masked", "channel", "priority", "is_active")
    list_filter = ("channel", "is_credit", "is_active")
    readonly_fields = ("card_token", "card_masked", "borrower")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cards are bound by the borrower through the channel, never typed in


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "occurred_at", "actor_label", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor_label", "action")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        return super().get_queryset(request).select_related("actor")


@admin.register(ChannelSetting)
class ChannelSettingAdmin(AuditedAdmin):
    """Where operators take a channel down for maintenance or change its limit."""

    list_display = (
        "channel",
        "is_enabled",
        "priority",
        "single_payment_limit",
        "maintenance_starts_at",
        "maintenance_ends_at",
    )
    list_editable = ("is_enabled", "priority")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(InboundCallbackRecord)
class InboundCallbackAdmin(ReadOnlyAdmin):
    """Every callback as received; quarantined ones are replayed from here after a fix."""

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
    exclude = ("body",)
    readonly_fields = ("raw_body",)
    actions = ["replay"]

    @admin.display(description=_("error"))
    def short_error(self, obj: InboundCallbackRecord) -> str:
        return obj.error[:80]

    @admin.display(description=_("raw body"))
    def raw_body(self, obj: InboundCallbackRecord) -> str:
        return bytes(obj.body).decode("utf-8", errors="replace")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Read-only admins hide actions by default; replay is a service call, not an edit.
        actions = super().get_actions(request)
        if not request.user.has_perm("repayments.view_inboundcallbackrecord"):
            actions.pop("replay", None)
        return actions

    @admin.action(description=_("Replay selected quarantined or held callbacks"))
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundCallbackRecord]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        outcomes = callbacks_replay(
            now=timezone.now(),
            statuses=[CallbackStatus.QUARANTINED, CallbackStatus.HELD],
            ids=ids,
            actor=request.user if isinstance(request.user, User) else None,
        )
        summary = ", ".join(f"{status}: {n}" for status, n in sorted(outcomes.items()))
        self.message_user(request, _("Replayed: %s") % (summary or _("nothing to replay")))


class DiscrepancyInline(admin.TabularInline):
    model = Discrepancy
    extra = 0
    can_delete = False
    fields = ("kind", "out_trade_no", "status", "channel_amount", "our_amount")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
