"""Loan products (terms and eligibility), loans, bound cards and settlement quotes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from repayments.admin.base import AuditedAdmin, ReadOnlyAdmin, ReadOnlyInline
from repayments.admin.masking import card_tail
from repayments.models import (
    BoundCard,
    Installment,
    Loan,
    LoanProduct,
    PaymentMethodType,
    SettlementQuote,
    SettlementQuoteLine,
)


class LoanProductForm(forms.ModelForm):
    # Eligibility: which methods a borrower of this product may repay with. Ticked
    # boxes rather than raw JSON, so a typo cannot switch a method off unnoticed.
    allowed_method_types = forms.MultipleChoiceField(
        label=_("allowed payment methods"),
        choices=PaymentMethodType.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Credit-funded methods (Huabei, credit cards) are off unless ticked. "
            "Takes effect at once for every loan of this product."
        ),
    )

    class Meta:
        model = LoanProduct
        fields = (
            "code",
            "name",
            "is_active",
            "amortization_method",
            "annual_rate_percent",
            "term_months",
            "monthly_fee",
            "early_settlement_fee_percent",
            "grace_days",
            "penalty_daily_rate_percent",
            "allocation_order",
            "allowed_method_types",
        )


@admin.register(LoanProduct)
class LoanProductAdmin(AuditedAdmin):
    """Changing a product never changes a signed loan's rate or term (copied at signing);
    the allowed payment methods and allocation order apply to its loans at once."""

    form = LoanProductForm
    list_display = (
        "code",
        "name",
        "amortization_method",
        "annual_rate_percent",
        "term_months",
        "grace_days",
        "is_active",
    )
    list_filter = ("amortization_method", "is_active")
    search_fields = ("code", "name")
    fieldsets = (
        (None, {"fields": ("code", "name", "is_active")}),
        (
            _("Terms for new loans"),
            {
                "fields": (
                    "amortization_method",
                    "annual_rate_percent",
                    "term_months",
                    "monthly_fee",
                    "early_settlement_fee_percent",
                )
            },
        ),
        (
            _("Rules for existing loans"),
            {
                "fields": (
                    "grace_days",
                    "penalty_daily_rate_percent",
                    "allocation_order",
                    "allowed_method_types",
                )
            },
        ),
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # retire a product with "active"; its loans keep pointing at it


class InstallmentInline(ReadOnlyInline):
    model = Installment
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


@admin.register(Loan)
class LoanAdmin(ReadOnlyAdmin):
    """Loans are signed contracts: created and changed by services, only viewed here."""

    list_display = ("contract_number", "borrower", "vehicle", "principal", "status", "start_date")
    list_filter = ("status", "product", "amortization_method")
    search_fields = ("contract_number", "borrower__phone", "borrower__full_name", "plate_number")
    list_select_related = ("borrower", "product")
    inlines = [InstallmentInline]


@admin.register(BoundCard)
class BoundCardAdmin(AuditedAdmin):
    """Cards are bound by the borrower through the channel; admins can only rank or
    switch one off. The channel token and the number are never shown."""

    list_display = ("borrower", "bank_name", "card", "channel", "priority", "is_active")
    list_filter = ("channel", "is_credit", "is_active")
    list_select_related = ("borrower",)
    fields = (
        "borrower",
        "bank_name",
        "card",
        "channel",
        "is_credit",
        "priority",
        "verified_until",
        "is_active",
    )
    readonly_fields = ("borrower", "bank_name", "card", "channel", "is_credit")

    @admin.display(description=_("card"))
    def card(self, obj: BoundCard) -> str:
        return card_tail(obj.card_masked)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class QuoteLineInline(ReadOnlyInline):
    model = SettlementQuoteLine
    fields = ("position", "installment", "component", "amount")
    readonly_fields = fields


@admin.register(SettlementQuote)
class SettlementQuoteAdmin(ReadOnlyAdmin):
    list_display = ("loan", "settlement_date", "total", "valid_until", "computed_at")
    list_select_related = ("loan",)
    search_fields = ("loan__contract_number",)
    inlines = [QuoteLineInline]
