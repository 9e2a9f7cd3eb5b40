"""Web forms."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from repayments.domain.money import InvalidAmount, format_yuan, parse_amount
from repayments.domain.states import PaymentStatus
from repayments.models import PaymentMethodType


class SignInForm(AuthenticationForm):
    """Borrowers sign in with their mobile number, staff with a username."""

    username = forms.CharField(
        label=_("Mobile number or username"),
        max_length=150,
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "inputmode": "text", "autofocus": True}
        ),
    )
    error_messages = {
        "invalid_login": _("The mobile number (or username) and password do not match."),
        "inactive": _("This account is disabled. Please call customer service."),
    }


# --- The repayment record's filters --------------------------------------------------

STATUS_GROUPS: dict[str, tuple[str, ...]] = {
    "processing": (PaymentStatus.CREATED, PaymentStatus.PROCESSING),
    "succeeded": (PaymentStatus.SUCCEEDED,),
    "failed": (PaymentStatus.FAILED, PaymentStatus.CANCELLED),
    "refunded": (PaymentStatus.REFUNDED,),
}


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        # A date input's value must be ISO (2026-03-05) whatever the language: the
        # zh-hans format (2026/03/05) makes browsers show an empty field.
        super().__init__(attrs, format="%Y-%m-%d")


class RecordFilterForm(forms.Form):
    """GET filters of the record page; every field optional, bad values explained."""

    loan = forms.TypedChoiceField(label=_("Loan"), required=False, coerce=int, empty_value=None)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[
            ("", _("All")),
            ("processing", _("Processing / being confirmed")),
            ("succeeded", _("Succeeded")),
            ("failed", _("Failed")),
            ("refunded", _("Refunded")),
        ],
    )
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput)
    date_to = forms.DateField(label=_("To"), required=False, widget=DateInput)
    trade_no = forms.CharField(
        label=_("Transaction number"),
        required=False,
        max_length=64,
        help_text=_("The Alipay or WeChat Pay transaction number, or our order number"),
    )

    def __init__(self, *args: Any, loans: list[tuple[int, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["loan"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [("", _("All loans"))] + [
            (pk, f"{vehicle} ({number})") for pk, number, vehicle in loans
        ]

    def clean_trade_no(self) -> str:
        return str(self.cleaned_data.get("trade_no") or "").strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end date must not be before the start date."))
        return data

    def statuses(self) -> tuple[str, ...]:
        return STATUS_GROUPS.get(self.cleaned_data.get("status") or "", ())


# --- Paying ---------------------------------------------------------------------------

KEY_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


class AmountField(forms.Field):
    """Yuan to the fen, parsed exactly (never through float)."""

    widget = forms.TextInput

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        if not widget.is_hidden:
            attrs.update({"inputmode": "decimal", "autocomplete": "off", "maxlength": "16"})
        return attrs

    def to_python(self, value: Any) -> Decimal | None:
        text = str(value or "").strip().replace(",", "").removeprefix("¥")
        if not text:
            return None
        try:
            return parse_amount(text[:32])
        except InvalidAmount:
            raise forms.ValidationError(
                _("Enter an amount in yuan greater than zero, with at most two decimals."),
                code="invalid_amount",
            ) from None


# The amount step's choice that leads to an early-settlement quote instead of an amount.
SETTLE_CHOICE = "settle"


class PayAmountForm(forms.Form):
    """Step 1: how much. ``choices`` maps each offered key to its amount (None: custom)."""

    choice = forms.ChoiceField(label=_("Amount"), widget=forms.RadioSelect)
    custom_amount = AmountField(label=_("Amount in yuan"), required=False)

    def __init__(
        self, *args: Any, choices: dict[str, Decimal | None], limit: Decimal, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.amounts = choices
        self.limit = limit
        field = self.fields["choice"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(key, key) for key in choices]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        key = data.get("choice")
        if key is None:
            return data
        custom = data.get("custom_amount")
        if key == SETTLE_CHOICE:
            if custom is not None:  # an amount typed, then settling chosen: ask
                self.add_error(
                    "custom_amount",
                    _('To pay this amount, choose "Another amount"; or clear it.'),
                )
            return data  # the view takes the borrower to the settlement quote
        if custom is not None and self.amounts.get(key) is not None:
            # Typed an amount but left another choice selected: ask, never guess.
            self.add_error(
                "custom_amount",
                _('To pay this amount, choose "Another amount"; or clear it.'),
            )
            return data
        amount = self.amounts.get(key) or custom
        if amount is None:
            if "custom_amount" not in self.errors:
                self.add_error("custom_amount", _("Enter the amount you want to pay."))
            return data
        if amount > self.limit:
            self.add_error(
                "custom_amount",
                _("At most %(limit)s is left to repay on this loan.")
                % {"limit": format_yuan(self.limit)},
            )
        data["amount"] = amount
        return data


class PayConfirmForm(forms.Form):
    """Step 2: which method; the hidden key makes a second submit the same payment."""

    amount = AmountField(widget=forms.HiddenInput)
    method = forms.ChoiceField(
        label=_("Payment method"), choices=PaymentMethodType.choices, widget=forms.RadioSelect
    )
    idempotency_key = forms.RegexField(regex=KEY_PATTERN, widget=forms.HiddenInput)

    def __init__(self, *args: Any, limit: Decimal, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data.get("amount")
        if amount is None or amount > self.limit:
            raise forms.ValidationError(
                _("At most %(limit)s is left to repay on this loan.")
                % {"limit": format_yuan(self.limit)}
            )
        return amount


class FallbackForm(forms.Form):
    method = forms.ChoiceField(choices=PaymentMethodType.choices)
    # How many attempts the page showed: a second tap, after the first started one, is
    # recognised and not sent again.
    attempts_seen = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
