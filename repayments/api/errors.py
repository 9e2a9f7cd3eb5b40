"""One error shape for the whole API: RFC 9457 problem details, translated.

Every error answer is ``application/problem+json``::

    {"type": "urn:anxin-repay:problem:<code>", "title": ..., "status": 409,
     "detail": ..., "code": "<code>", "instance": "/api/v1/...",
     "errors": [{"field": "amount", "code": "invalid_amount", "message": ...}]}

``code`` is stable and machine-readable; ``title`` and ``detail`` are in the
request's language (zh-hans by default, ``Accept-Language: en`` for English).
Domain errors (``DomainError`` subclasses, each with a ``code``) are mapped
here, once; the services never know about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import set_rollback

from repayments.domain.errors import DomainError

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:anxin-repay:problem:"

TITLES = {
    400: _("Bad request"),
    401: _("Not signed in"),
    403: _("Not allowed"),
    404: _("Not found"),
    405: _("Method not allowed"),
    406: _("Not acceptable"),
    409: _("Conflict"),
    415: _("Unsupported media type"),
    429: _("Too many requests"),
}

# Domain error code -> (HTTP status, translated detail, field it concerns or "").
# 400: the input is wrong; 404: not yours (never say whether it exists);
# 409: a rule refuses it in the current state (retrying later may work).
DOMAIN_ERRORS: dict[str, tuple[int, Any, str]] = {
    "not_found": (404, _("Not found."), ""),
    "invalid_amount": (
        400,
        _("Enter an amount in yuan with at most two decimal places, for example 2967.99."),
        "amount",
    ),
    "invalid_settlement_date": (
        400,
        _("The settlement date must be today or later, and not after the last due date."),
        "settlement_date",
    ),
    "invalid_dispute": (400, _("Please check the dispute details."), ""),
    "idempotency_key_reused": (
        409,
        _("This Idempotency-Key was already used for a different request."),
        "",
    ),
    "request_in_flight": (
        409,
        _("A request with this Idempotency-Key is still being processed. Try again shortly."),
        "",
    ),
    "attempt_already_open": (
        409,
        _(
            "A payment for this loan is still being confirmed. Please wait for its result "
            "before paying again, so you are not charged twice."
        ),
        "",
    ),
    "fallback_not_safe": (
        409,
        _("The earlier payment attempt is still being checked. Please try again shortly."),
        "",
    ),
    "loan_not_repayable": (409, _("This loan is settled; there is nothing to repay."), ""),
    "method_not_allowed": (409, _("Your loan contract does not allow this payment method."), ""),
    "method_unavailable": (409, _("This payment method cannot be used right now."), "method"),
    "payment_not_payable": (409, _("This payment can no longer be paid."), ""),
    "quote_not_usable": (
        409,
        _(
            "This settlement quote has expired or does not match the amount. "
            "Please get a new quote."
        ),
        "quote",
    ),
    "nothing_to_settle": (409, _("Nothing is outstanding on this loan."), ""),
    "illegal_transition": (409, _("This change is not possible in the current status."), ""),
}
DEFAULT_DOMAIN_ERROR = (409, _("This request cannot be carried out now."), "")


class RequestInFlight(DomainError):
    """A request with this Idempotency-Key is still being processed."""

    code = "request_in_flight"


class LockedOut(exceptions.Throttled):
    """Too many failed sign-ins for this number from this address (django-axes)."""

    default_detail = _("Too many failed sign-in attempts. Please try again later.")
    default_code = "locked_out"


def problem(
    *,
    status_code: int,
    code: str,
    detail: Any,
    request: Request | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build a problem-details response (the only way the API answers an error)."""
    title = TITLES.get(status_code) or HTTPStatus(status_code).phrase
    body: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{code}",
        "title": str(title),
        "status": status_code,
        "detail": str(detail),
        "code": code,
    }
    if request is not None:
        body["instance"] = request.path
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: domain and framework errors to problem details.

    Anything else is a bug: it is left to become a 500 so it gets noticed.
    """
    request = context.get("request")
    if isinstance(exc, DomainError):
        set_rollback()
        return _domain_problem(exc, request)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    set_rollback()
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(exc.wait)  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.ValidationError):
        return problem(
            status_code=status.HTTP_400_BAD_REQUEST,
            code="invalid",
            detail=_("Some fields are not valid; see errors."),
            request=request,
            errors=list(flatten_errors(exc.detail)),
        )
    code = exc.get_codes()
    return problem(
        status_code=exc.status_code,
        code=code if isinstance(code, str) else exc.default_code,
        detail=exc.detail,
        request=request,
        headers=headers,
    )


def _domain_problem(exc: DomainError, request: Request | None) -> Response:
    status_code, detail, field = DOMAIN_ERRORS.get(exc.code, DEFAULT_DOMAIN_ERROR)
    # Some refusals carry their own translated sentence and the field they concern
    # (a dispute's description, why a method cannot be used now): prefer those.
    own_field = getattr(exc, "field", "")
    if own_field:
        detail, field = exc.message, own_field
    errors = [{"field": field, "code": exc.code, "message": str(detail)}] if field else None
    response = problem(
        status_code=status_code, code=exc.code, detail=detail, request=request, errors=errors
    )
    reason = getattr(exc, "reason_code", None)
    if reason:
        response.data["reason_code"] = reason
    return response


def flatten_errors(detail: Any, prefix: str = "") -> Iterator[dict[str, str]]:
    """DRF's nested error detail as a flat list of {field, code, message}."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            yield from flatten_errors(value, f"{prefix}.{index}" if nested else prefix)
    else:
        yield {
            "field": prefix or "non_field_errors",
            "code": str(getattr(detail, "code", "invalid")),
            "message": str(detail),
        }
