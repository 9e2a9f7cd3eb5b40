"""Pay now: choose the amount, then a method (every method listed, with its reason when
it cannot be used), confirm, and go to the channel. And the one-tap fallback to the
next method when a channel failed.

The confirm form carries an idempotency key, so a double submit, a reload or the
back button gives the same payment, never a second charge.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from portal.forms import SETTLE_CHOICE, FallbackForm, PayAmountForm, PayConfirmForm
from portal.presenters import (
    amount_choices,
    domain_error_words,
    method_choices,
    outstanding_total,
)
from portal.views.payflow import (
    after_start,
    method_option,
    next_action_for,
    start_with_method,
    submit_once,
    user_of,
)
from repayments.domain.errors import DomainError
from repayments.models import Loan, LoanStatus, PaymentMethodType
from repayments.selectors import (
    cards_for_borrower,
    installments_for_loan,
    loan_for_borrower,
    payment_by_idempotency_key,
    payment_for_borrower,
)
from repayments.services.methods import (
    fallback_choice_for,
    payment_choice_for,
)
from repayments.services.payments import payment_create


@login_required
@require_GET
def pay(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Step 1 (how much), then step 2 (which method) once an amount was chosen."""
    loan = _own_loan(request, loan_id)
    if loan.status != LoanStatus.ACTIVE:
        messages.info(request, _("This loan is settled; there is nothing left to repay."))
        return redirect("home")
    choices, limit = _amounts(loan)
    form = PayAmountForm(
        request.GET if "choice" in request.GET else None,
        choices={c.key: c.amount for c in choices},
        limit=limit,
        initial={"choice": choices[0].key},
    )
    if form.is_bound and form.is_valid():
        if form.cleaned_data["choice"] == SETTLE_CHOICE:
            return redirect("settlement", loan_id=loan.pk)
        amount = form.cleaned_data["amount"]
        confirm = PayConfirmForm(
            initial={"amount": amount, "idempotency_key": uuid.uuid4().hex}, limit=limit
        )
        return _methods_page(request, loan, amount, confirm)
    context = {
        "loan": loan,
        "form": form,
        "choices": choices,
        "limit": limit,
        "selected": form["choice"].value(),
    }
    return render(request, "portal/pay_amount.html", context)


@login_required
@require_POST
def pay_confirm(request: HttpRequest, loan_id: int) -> HttpResponse:
    """Create the payment (or find it again by its key) and start it at the channel."""
    loan = _own_loan(request, loan_id)
    limit = _amounts(loan)[1]
    form = PayConfirmForm(request.POST, limit=limit)
    if not form.is_valid():
        if "amount" in form.errors or "idempotency_key" in form.errors:
            messages.error(request, _("Please choose the amount again."))
            return redirect("pay", loan_id=loan.pk)
        return _methods_page(request, loan, form.cleaned_data["amount"], form, status=400)
    data = form.cleaned_data
    with submit_once(request, data["idempotency_key"]) as first:
        if not first:
            messages.info(request, _("Your payment is already being submitted."))
            return redirect("record")
        return _submit(request, loan, data["amount"], PaymentMethodType(data["method"]), form)


def _submit(
    request: HttpRequest,
    loan: Loan,
    amount: Decimal,
    method: PaymentMethodType,
    form: PayConfirmForm,
) -> HttpResponse:
    borrower, now = user_of(request), timezone.now()
    key = form.cleaned_data["idempotency_key"]
    existing = payment_by_idempotency_key(borrower=borrower, key=key)
    if existing is not None and existing.attempts.all():
        # Submitted before (a double tap, a reload, the back button): same payment.
        return after_start(request, existing, next_action_for(request, existing))
    option = method_option(loan, amount, method)
    if existing is None and option is not None and not option.option.available:
        form.add_error("method", option.message)
        return _methods_page(request, loan, amount, form, status=409)
    try:
        payment = existing or payment_create(
            loan=loan, amount=amount, now=now, idempotency_key=key, actor=borrower
        )
        return start_with_method(request, payment, method, fallback=False)
    except DomainError as exc:
        form.add_error(None, domain_error_words(exc))
        return _methods_page(request, loan, amount, form, status=409)


@login_required
@require_POST
def pay_fallback(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """One tap: pay the same payment with the next method, once the failed one is
    known not to have charged (``payment_fallback`` checks, and says so if not)."""
    payment = payment_for_borrower(borrower=user_of(request), public_id=public_id)
    if payment is None:
        raise Http404
    form = FallbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Please choose a payment method."))
        return redirect("payment-detail", public_id=payment.public_id)
    seen = form.cleaned_data["attempts_seen"]
    if len(payment.attempts.all()) != seen:
        return redirect("payment-detail", public_id=payment.public_id)  # tapped twice
    method = PaymentMethodType(form.cleaned_data["method"])
    choice = fallback_choice_for(payment=payment, now=timezone.now())
    option = next((o for o in choice.options if o.option.method_type == method), None)
    if option is None or not option.option.available:
        messages.error(request, option.message if option else _("Please choose a payment method."))
        return redirect("payment-detail", public_id=payment.public_id)
    with submit_once(request, f"fallback-{payment.public_id}") as first:
        if not first:
            return redirect("payment-detail", public_id=payment.public_id)
        try:
            return start_with_method(request, payment, method, fallback=True)
        except DomainError as exc:
            messages.error(request, domain_error_words(exc))
            return redirect("payment-detail", public_id=payment.public_id)


def _methods_page(
    request: HttpRequest,
    loan: Loan,
    amount: Decimal,
    form: PayConfirmForm,
    *,
    status: int = 200,
) -> HttpResponse:
    choice = payment_choice_for(loan=loan, amount=amount, now=timezone.now())
    methods = method_choices(choice, cards_for_borrower(borrower=user_of(request)))
    chosen = form["method"].value() or choice.recommended
    context: dict[str, Any] = {
        "loan": loan,
        "amount": amount,
        "form": form,
        "methods": methods,
        "chosen": chosen,
        "advice": choice.advice,
        "any_available": any(m.available for m in methods),
    }
    return render(request, "portal/pay_methods.html", context, status=status)


def _amounts(loan: Loan) -> tuple[list[Any], Decimal]:
    installments = list(installments_for_loan(loan=loan))
    choices = amount_choices(loan, installments, timezone.localdate())
    return choices, outstanding_total(installments)


def _own_loan(request: HttpRequest, loan_id: int) -> Loan:
    loan = loan_for_borrower(borrower=user_of(request), loan_id=loan_id)
    if loan is None:
        raise Http404
    return loan
