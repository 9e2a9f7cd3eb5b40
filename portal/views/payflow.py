"""What the pay, fallback and settlement views share: who is paying, how a method
stands, starting a payment at its channel, where the channel sends the borrower next,
and a guard so that a double tap is handled once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.presenters import method_words, withholding_card
from repayments.channels.base import NextAction
from repayments.domain.states import AttemptStatus
from repayments.models import Loan, Payment, PaymentMethodType, User
from repayments.selectors import cards_for_borrower
from repayments.services.errors import AttemptAlreadyOpen
from repayments.services.methods import ExplainedOption, payment_choice_for
from repayments.services.routing import FallbackNotSafe, payment_fallback, payment_start

SESSION_KEY = "pay-next-actions"
REMEMBERED = 5  # the borrower's last few payments, enough to come back to a checkout
# Longer than one submit can take (a channel call at its time-out, then the next).
SUBMIT_LOCK_SECONDS = 60


def user_of(request: HttpRequest) -> User:
    """The signed-in borrower (views are behind ``login_required``)."""
    user = request.user
    assert isinstance(user, User)
    return user


@contextmanager
def submit_once(request: HttpRequest, token: str) -> Iterator[bool]:
    """Yield True for the request that holds ``token``; a concurrent second tap gets False."""
    lock = f"portal:submit:{request.user.pk}:{token}"
    held = cache.add(lock, 1, SUBMIT_LOCK_SECONDS)
    try:
        yield held
    finally:
        if held:
            cache.delete(lock)


def remember_next_action(request: HttpRequest, payment: Payment, action: NextAction) -> None:
    """Keep the checkout URL or QR content, so the detail page (and a repeated submit)
    can send the borrower back to it while the order is still open."""
    if action.kind == "none":
        return
    remembered = dict(request.session.get(SESSION_KEY, {}))
    remembered.pop(str(payment.public_id), None)
    remembered[str(payment.public_id)] = [action.kind, action.value]
    request.session[SESSION_KEY] = dict(list(remembered.items())[-REMEMBERED:])


def next_action_for(request: HttpRequest, payment: Payment) -> NextAction | None:
    remembered = request.session.get(SESSION_KEY, {}).get(str(payment.public_id))
    return NextAction(remembered[0], remembered[1]) if remembered else None


def after_start(request: HttpRequest, payment: Payment, action: NextAction | None) -> HttpResponse:
    """Send the borrower where the channel wants them: its checkout page for a redirect,
    else the payment's own page (which shows a QR code's content, or the withholding)."""
    if action is not None and action.kind == "redirect" and action.value:
        return HttpResponseRedirect(action.value)
    return redirect("payment-detail", public_id=payment.public_id)


def method_option(loan: Loan, amount: Decimal, method: str) -> ExplainedOption | None:
    """How ``method`` stands for paying ``amount`` on ``loan`` now (None: not offered)."""
    choice = payment_choice_for(loan=loan, amount=amount, now=timezone.now())
    return next((o for o in choice.options if o.option.method_type == method), None)


def start_with_method(
    request: HttpRequest, payment: Payment, method: PaymentMethodType, *, fallback: bool
) -> HttpResponse:
    """Send the payment to the method's channel and take the borrower where it says.

    :raises DomainError: what the routing services refuse with, other than the two
        answered here (another attempt in flight; an earlier one not yet known).
    """
    now = timezone.now()
    cards = cards_for_borrower(borrower=user_of(request))
    card = withholding_card(method, cards, timezone.localdate(now))
    start = payment_fallback if fallback else payment_start
    try:
        started = start(
            payment_id=payment.pk,
            method_type=method,
            now=now,
            card_token=card.card_token if card else "",
        )
    except (AttemptAlreadyOpen, FallbackNotSafe):
        messages.info(
            request,
            _(
                "An earlier attempt for this loan is still being confirmed. We will not "
                "charge you twice: please wait for its result."
            ),
        )
        return redirect("payment-detail", public_id=payment.public_id)
    if started.attempt.method_type != method and started.attempt.status == AttemptStatus.SUCCEEDED:
        messages.success(request, _("Your earlier payment went through; nothing more to pay."))
    if started.attempt.status in (AttemptStatus.FAILED, AttemptStatus.CLOSED):
        messages.error(
            request,
            _("%(method)s could not take this payment. Please choose another method below.")
            % {"method": method_words(method)},
        )
    remember_next_action(request, payment, started.next_action)
    return after_start(request, payment, started.next_action)
