"""Request rates (DRF throttles; rates in settings.REST_FRAMEWORK).

Scopes: ``auth`` (token requests, per client address, on top of the django-axes
lockout per number and address), ``payments`` (creating payments, per borrower),
and ``borrower`` (everything else: per borrower, or per address when not signed in).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class RetryAfterMixin:
    """Always say when to come back: DRF gives no wait (so no Retry-After) when more
    requests are on record than the rate allows, e.g. just after a rate was lowered."""

    duration: int
    history: list[float]
    now: float

    def wait(self) -> float | None:
        waited: float | None = super().wait()  # type: ignore[misc]
        if waited is None and self.history:
            return max(self.duration - (self.now - self.history[-1]), 1.0)
        return waited


class BorrowerRateThrottle(RetryAfterMixin, UserRateThrottle):
    scope = "borrower"


class AuthRateThrottle(RetryAfterMixin, AnonRateThrottle):
    """Per client address, signed in or not: guessing passwords is the risk here."""

    scope = "auth"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PaymentRateThrottle(RetryAfterMixin, UserRateThrottle):
    """Creating payments, per borrower: each one may reach a payment channel."""

    scope = "payments"
