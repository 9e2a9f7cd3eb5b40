"""Paying through the API: the Idempotency-Key contract around the payment services.

The rules stay in the services: ``payment_create`` makes the same key and body
give the same payment (and refuses another body), ``payment_choice_for`` decides
which methods can be used, ``payment_start`` opens the attempt. This module only
adds what HTTP needs: a second request with a key that is still being
processed is refused (409) instead of waiting, and a replay gets the answer the
first request got, including the checkout URL or QR code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.utils import timezone

from repayments.api.errors import RequestInFlight
from repayments.channels.base import NextAction
from repayments.domain.errors import DomainError
from repayments.models import (
    BoundCard,
    Loan,
    Payment,
    PaymentMethodType,
    SettlementQuote,
    User,
)
from repayments.services.errors import IdempotencyKeyReused
from repayments.services.methods import CARD_METHODS, payment_choice_for
from repayments.services.payments import payment_create
from repayments.services.routing import WALLET_ORDER_TTL, payment_start

# Longer than any one request can take (two channel calls at their time-out).
IN_FLIGHT_SECONDS = 60


class MethodUnavailable(DomainError):
    """This payment method cannot be used right now."""

    code = "method_unavailable"

    def __init__(self, *, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.field = "method"


@dataclass(frozen=True)
class Submitted:
    payment: Payment
    next_action: NextAction
    created: bool  # False: a replay of an earlier request with the same key


@contextmanager
def in_flight_guard(*, borrower_id: int, key: str) -> Iterator[None]:
    """Hold the key while one request works on it; a concurrent one gets 409."""
    lock = f"api:idempotency:{borrower_id}:{key}"
    if not cache.add(lock, 1, IN_FLIGHT_SECONDS):
        raise RequestInFlight()
    try:
        yield
    finally:
        cache.delete(lock)


def payment_submit(
    *,
    borrower: User,
    loan: Loan,
    amount: Decimal,
    method: PaymentMethodType,
    key: str,
    now: datetime,
    quote: SettlementQuote | None = None,
    card: BoundCard | None = None,
) -> Submitted:
    """Create (or replay) the payment for ``key`` and send it to the method's channel.

    :raises RequestInFlight: while another request with this key is being processed.
    :raises IdempotencyKeyReused: for the same key with another body.
    :raises MethodUnavailable: when the method cannot be used now (with the reason).
    :raises DomainError: whatever payment_create and payment_start raise.
    """
    with in_flight_guard(borrower_id=borrower.pk, key=key):
        existing = Payment.objects.filter(borrower=borrower, idempotency_key=key).first()
        if existing is not None:
            payment_create(loan=loan, amount=amount, now=now, idempotency_key=key, quote=quote)
            first = existing.attempts.order_by("created_at", "id").first()
            if first is not None:
                if first.method_type != method:
                    raise IdempotencyKeyReused()
                return Submitted(existing, _remembered(existing), created=False)
        _check_available(loan=loan, amount=amount, method=method, now=now)
        payment = existing or payment_create(
            loan=loan, amount=amount, now=now, idempotency_key=key, quote=quote
        )
        token = (
            (card or _default_card(borrower, method, now)).card_token if _needs_card(method) else ""
        )
        started = payment_start(
            payment_id=payment.pk, method_type=method, now=now, card_token=token
        )
        _remember(payment, started.next_action)
        return Submitted(payment, started.next_action, created=existing is None)


def _check_available(*, loan: Loan, amount: Decimal, method: str, now: datetime) -> None:
    choice = payment_choice_for(loan=loan, amount=amount, now=now)
    option = next(o for o in choice.options if o.option.method_type == method)
    if not option.option.available:
        reason = option.option.reason
        raise MethodUnavailable(reason_code=str(reason), message=option.message)


def _needs_card(method: str) -> bool:
    return method in CARD_METHODS


def _default_card(borrower: User, method: str, now: datetime) -> BoundCard:
    """The borrower's first usable card of the kind the method takes.

    ``payment_choice_for`` has already refused the method when there is none.
    """
    today = timezone.localdate(now)
    cards = BoundCard.objects.filter(
        borrower=borrower, is_active=True, is_credit=CARD_METHODS[PaymentMethodType(method)]
    ).order_by("priority", "pk")
    return next(c for c in cards if c.verified_until is None or c.verified_until >= today)


def _remember(payment: Payment, action: NextAction) -> None:
    # A wallet order cannot be paid after its TTL, so neither can its checkout link.
    cache.set(
        f"api:next-action:{payment.pk}",
        {"kind": action.kind, "value": action.value},
        int(WALLET_ORDER_TTL.total_seconds()),
    )


def _remembered(payment: Payment) -> NextAction:
    stored = cache.get(f"api:next-action:{payment.pk}")
    return NextAction(stored["kind"], stored["value"]) if stored else NextAction("none")
