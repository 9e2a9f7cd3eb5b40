"""What the pay and fallback views share: who is paying, where the channel sends the
borrower next, and a guard so that a double tap is handled once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect

from repayments.channels.base import NextAction
from repayments.models import Payment, User

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
