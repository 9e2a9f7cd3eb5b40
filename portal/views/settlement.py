"""Early settlement: pick a date, read the quote line by line, pay it.

The quote is computed and stored by ``settlement_quote_create`` (the engine that
will book the payment); paying goes through the same ``payment_create`` as every
other payment, bound to the quote, and then into the pay flow's channel start. A
quote that expired is never paid: the borrower is told and offered a fresh one.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.forms import KEY_PATTERN, DateInput
from portal.presenters import domain_error_words, method_choices
from portal.views.payflow import (
    after_start,
    method_option,
    next_action_for,
    start_with_method,
    submit_once,
    user_of,
)
from repayments.domain.errors import DomainError
from repayments.domain.settlement import NothingToSettle
from repayments.models import Loan, LoanStatus, PaymentMethodType, SettlementQuote
from repayments.selectors import (
    cards_for_borrower,
    installments_for_loan,
    loan_for_borrower,
    payment_by_idempotency_key,
)
from repayments.selectors_borrower import quote_for_borrower
from repayments.services.errors import LoanNotRepayable, QuoteNotUsable
from repayments.services.methods import payment_choice_for
from repayments.services.payments import payment_create
from repayments.services.settlement import InvalidSettlementDate, settlement_quote_create


class SettlementDateForm(forms.Form):
    settlement_date = forms.DateField(
        label=gettext_lazy("Settle on"),
        widget=DateInput,
        error_messages={
            "required": gettext_lazy("Choose the date you want to settle on."),
            "invalid": gettext_lazy("Enter a date like 2026-03-05."),
        },
    )

    def __init__(self, *args: Any, first_day: date, last_day: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_day, self.last_day = first_day, last_day
        widget = self.fields["settlement_date"].widget
        widget.attrs.update({"min": first_day.isoformat(), "max": last_day.isoformat()})

    def clean_settlement_date(self) -> date:
        day: date = self.cleaned_data["settlement_date"]
        if not self.first_day <= day <= self.last_day:
            raise forms.ValidationError(_date_range_words(self.first_day, self.last_day))
        return day


class SettlementPayForm(forms.Form):
    method = forms.ChoiceField(
        label=gettext_lazy("Payment method"),
        choices=PaymentMethodType.choices,
        widget=forms.RadioSelect,
        error_messages={"required": gettext_lazy("Please choose a payment method.")},
    )
    idempotency_key = forms.RegexField(regex=KEY_PATTERN, widget=forms.HiddenInput)


@login_required
@require_http_methods(["GET", "POST"])
def settlement(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Choose the settlement date (today by default); posting it computes the quote."""
    loan = _own_active_loan(request, loan_id)
    if loan is None:
        return redirect("home")
    today = timezone.localdate()
    last_day = _last_due_date(loan)
    form = SettlementDateForm(
        request.POST or None,
        first_day=today,
        last_day=last_day,
        initial={"settlement_date": today},
    )
    if request.method == "POST" and form.is_valid():
        try:
            quote = settlement_quote_create(
                loan=loan, settlement_date=form.cleaned_data["settlement_date"], now=timezone.now()
            )
        except InvalidSettlementDate:
            form.add_error("settlement_date", _date_range_words(today, last_day))
        except NothingToSettle:
            form.add_error(None, _("Nothing is left to repay on this loan."))
        except LoanNotRepayable:
            return _loan_settled(request)
        else:
            return redirect("settlement-quote", loan_id=loan.pk, quote_id=quote.public_id)
    status = 400 if form.is_bound and form.errors else 200
    context = {"loan": loan, "form": form, "last_day": last_day, "today": today}
    return render(request, "portal/settlement.html", context, status=status)


@login_required
@require_GET
def settlement_quote(request: HttpRequest, loan_id: int, quote_id: uuid.UUID) -> HttpResponse:
    """The quote, every line of it, its validity, and how to pay it."""
    loan, quote = _own_quote(request, loan_id, quote_id)
    form = SettlementPayForm(initial={"idempotency_key": uuid.uuid4().hex})
    return _quote_page(request, loan, quote, form)


@login_required
@require_POST
def settlement_pay(request: HttpRequest, loan_id: int, quote_id: uuid.UUID) -> HttpResponse:
    """Pay the quote: one payment bound to it (same key: same payment), then the channel."""
    loan, quote = _own_quote(request, loan_id, quote_id)
    form = SettlementPayForm(request.POST)
    if not form.is_valid():
        if "idempotency_key" in form.errors:
            messages.error(request, _("Please confirm the payment again."))
            return redirect("settlement-quote", loan_id=loan.pk, quote_id=quote.public_id)
        return _quote_page(request, loan, quote, form, status=400)
    key = form.cleaned_data["idempotency_key"]
    method = PaymentMethodType(form.cleaned_data["method"])
    borrower, now = user_of(request), timezone.now()
    with submit_once(request, key) as first:
        if not first:
            messages.info(request, _("Your payment is already being submitted."))
            return redirect("record")
        existing = payment_by_idempotency_key(borrower=borrower, key=key)
        if existing is not None and existing.attempts.all():
            # A double tap, a reload or the back button: the same payment, never a second.
            return after_start(request, existing, next_action_for(request, existing))
        if existing is None and quote.valid_until < now:
            return _quote_page(request, loan, quote, form, status=409)  # shows "expired"
        option = method_option(loan, quote.total, method)
        if existing is None and (option is None or not option.option.available):
            form.add_error(
                "method", option.message if option else _("Please choose a payment method.")
            )
            return _quote_page(request, loan, quote, form, status=409)
        try:
            payment = existing or payment_create(
                loan=loan,
                amount=quote.total,
                now=now,
                idempotency_key=key,
                quote=quote,
                actor=borrower,
            )
            return start_with_method(request, payment, method, fallback=False)
        except QuoteNotUsable:
            return _quote_page(request, loan, quote, form, status=409)
        except DomainError as exc:
            form.add_error(None, domain_error_words(exc))
            return _quote_page(request, loan, quote, form, status=409)


def _quote_page(
    request: HttpRequest,
    loan: Loan,
    quote: SettlementQuote,
    form: SettlementPayForm,
    *,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    expired = quote.valid_until < now
    context: dict[str, Any] = {
        "loan": loan,
        "quote": quote,
        "lines": quote.breakdown(),
        "expired": expired,
        "form": form,
        "fresh_date": max(quote.settlement_date, timezone.localdate(now)),
    }
    if not expired:
        choice = payment_choice_for(loan=loan, amount=quote.total, now=now)
        methods = method_choices(choice, cards_for_borrower(borrower=user_of(request)))
        context.update(
            methods=methods,
            chosen=form["method"].value() or choice.recommended,
            advice=choice.advice,
            any_available=any(m.available for m in methods),
        )
    return render(request, "portal/settlement_quote.html", context, status=status)


def _own_active_loan(request: HttpRequest, loan_id: int) -> Loan | None:
    """The borrower's loan (404 for anyone else's); None, with a message, once settled."""
    loan = loan_for_borrower(borrower=user_of(request), loan_id=loan_id)
    if loan is None:
        raise Http404
    if loan.status != LoanStatus.ACTIVE:
        _loan_settled(request)
        return None
    return loan


def _own_quote(
    request: HttpRequest, loan_id: int, quote_id: uuid.UUID
) -> tuple[Loan, SettlementQuote]:
    loan = loan_for_borrower(borrower=user_of(request), loan_id=loan_id)
    if loan is None:
        raise Http404
    quote = quote_for_borrower(borrower=user_of(request), loan=loan, public_id=quote_id)
    if quote is None:
        raise Http404
    return loan, quote


def _loan_settled(request: HttpRequest) -> HttpResponse:
    messages.info(request, _("This loan is settled; there is nothing left to repay."))
    return redirect("home")


def _last_due_date(loan: Loan) -> date:
    last = installments_for_loan(loan=loan).last()
    return last.due_date if last is not None else timezone.localdate()


def _date_range_words(first: date, last: date) -> str:
    return _("Choose a date from %(first)s to %(last)s.") % {
        "first": first.isoformat(),
        "last": last.isoformat(),
    }
