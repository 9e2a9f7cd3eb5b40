"""The car-loan repayment record (车贷还款记录) and each payment's detail page.

Rows still being confirmed poll for their status with htmx, backing off
(2 s, 4 s, 8 s ... capped) and stopping at a final state. Each poll may ask
the channel at once (``attempt_query_now``, rate-limited per attempt), so a
lost callback shows up while the borrower is looking.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import django
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import get_template, render_to_string
from django.urls import get_script_prefix
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from portal.forms import RecordFilterForm
from portal.presenters import (
    MAX_POLLS,
    PaymentRow,
    method_choices,
    payment_row,
    payment_rows,
    poll_delay,
)
from portal.timeline import timeline_steps, trade_numbers
from portal.views.payflow import next_action_for, user_of
from repayments.domain.states import OPEN_ATTEMPT_STATUSES, PaymentStatus
from repayments.models import Payment, PaymentAttempt, User
from repayments.selectors import (
    cards_for_borrower,
    loan_choices_for_borrower,
    payment_for_borrower,
    payments_for_record,
    record_payments,
    record_stamp,
)
from repayments.selectors_borrower import payments_by_trade_number
from repayments.services.janitor import attempt_query_now
from repayments.services.methods import fallback_choice_for

logger = logging.getLogger(__name__)

PAGE_SIZE = 20
# A fallback is offered only where no attempt could still take money.
FALLBACK_STATUSES = frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED})


@login_required
@require_GET
def record(request: HttpRequest) -> HttpResponse:
    """Every payment of the signed-in borrower, filtered by loan, status and dates."""
    borrower = user_of(request)
    # The stamp is read before any row the page shows: a page rendered below can only be
    # newer than the stamp it is stored under, never older.
    key = _page_key(request, record_stamp(borrower=borrower)) if _is_cacheable(request) else None
    if key is not None and (cached := cache.get(key)) is not None:
        return _with_csrf_token(request, cached)
    lookup = trade_number_lookup(request.GET.get("lookup"), borrower=borrower)
    if lookup.payment_id is not None:
        return redirect("payment-detail", public_id=lookup.payment_id)
    loans = loan_choices_for_borrower(borrower=borrower)
    form = RecordFilterForm(request.GET or None, loans=loans)
    filters: dict[str, Any] = {}
    if form.is_bound:
        form.is_valid()  # invalid fields are shown with their error and left out
        filters = form.cleaned_data
    payments = payments_for_record(
        borrower=borrower,
        loan_id=filters.get("loan"),
        statuses=form.statuses() if filters else (),
        created_from=_day_start(filters.get("date_from")),
        created_before=_day_start(filters.get("date_to"), plus_days=1),
        trade_no=filters.get("trade_no") or "",
    )
    page = Paginator(payments, PAGE_SIZE).get_page(request.GET.get("page"))
    cards = cards_for_borrower(borrower=borrower)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("lookup", None)  # paging on must not repeat the lookup
    rows = payment_rows(record_payments(page.object_list), cards)
    context = {
        "form": form,
        "rows": rendered_rows(rows, poll=_poll_context(0), many_loans=len(loans) > 1),
        "page": page,
        "query": query.urlencode(),
        "filtered": any(filters.get(name) for name in form.fields),
        "lookup": lookup,
    }
    if key is None or form.errors:  # an invalid filter's page is shown, never stored
        return render(request, "portal/record.html", context)
    rendered = _render_for_cache(request, "portal/record.html", context)
    cache.set(key, rendered, PAGE_CACHE_SECONDS)
    return _with_csrf_token(request, rendered)


# --- The whole page, cached -------------------------------------------------------------

PAGE_CACHE_SECONDS = 10 * 60
# Only the page as reached from the tabs, its filters and paging are cached: any other
# parameter (a lookup, a transaction-number search, junk) is rendered fresh, so
# nobody can fill the cache with variants of the same page.
CACHED_PARAMETERS = frozenset({"loan", "status", "date_from", "date_to", "page"})


@dataclass(frozen=True)
class CachedPage:
    """A rendered page whose CSRF token is a random stand-in, replaced per answer."""

    html: str
    placeholder: str


def _is_cacheable(request: HttpRequest) -> bool:
    parameters = request.GET
    if not set(parameters) <= CACHED_PARAMETERS or any(
        len(values) > 1 for _name, values in parameters.lists()
    ):
        return False
    return not _has_messages(request)


def _page_key(request: HttpRequest, stamp: str) -> str:
    """The page is a function of the borrower's rows (their stamp), the path with its
    filters, the language and time zone, and the code and templates that render it:
    the same key can only mean the same page."""
    made_from = "\n".join(
        (
            str(request.user.pk),
            stamp,
            request.get_full_path(),
            translation.get_language() or "",
            timezone.get_current_timezone_name(),
            get_script_prefix(),
        )
    )
    digest = hashlib.sha256(made_from.encode()).hexdigest()
    return f"portal:record-page:{_render_code_version()}:{digest}"


def _has_messages(request: HttpRequest) -> bool:
    """A flash message is shown once: such a page is rendered, never cached."""
    return bool(len(messages.get_messages(request)))


def _render_for_cache(request: HttpRequest, template: str, context: dict[str, Any]) -> CachedPage:
    """Render with what the context processors give (base.html uses no others), but a
    random stand-in for the CSRF token: nothing a visitor sends can contain it."""
    placeholder = f"csrf-{secrets.token_hex(16)}"
    shared = {
        "request": request,
        "user": request.user,
        "messages": (),
        "csrf_token": placeholder,
        **context,
    }
    return CachedPage(get_template(template).render(shared), placeholder)


def _with_csrf_token(request: HttpRequest, page: CachedPage) -> HttpResponse:
    return HttpResponse(page.html.replace(page.placeholder, get_token(request)))


# What renders the page and its rows: our code, templates, translations, styles and scripts,
# and Django's.
RENDERING_SOURCES = ("portal", "repayments", "templates", "locale", "static")


@functools.cache
def _render_code_version() -> str:
    """A digest of everything that renders the page and its rows (``RENDERING_SOURCES``
    and Django's version), or the release named by ``ANXIN_RELEASE``: a deploy that
    changes any of it starts both caches afresh, and two releases never share entries."""
    release = os.environ.get("ANXIN_RELEASE", "").strip()
    if release:
        return hashlib.sha256(release.encode()).hexdigest()[:12]
    digest = hashlib.sha256(django.get_version().encode())
    for top in RENDERING_SOURCES:
        for path in sorted(Path(settings.BASE_DIR, top).rglob("*")):
            if path.suffix in (".py", ".html", ".mo", ".css", ".js") and (
                "migrations" not in path.parts
            ):
                digest.update(path.relative_to(settings.BASE_DIR).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@login_required
@require_GET
def record_row(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """One record row, refreshed by its own poll (htmx), asking the channel if due."""
    payment = _own_payment(request, public_id)
    poll = _poll_number(request)
    if _ask_channel(payment):
        payment = _own_payment(request, public_id)
    row = payment_row(payment, cards_for_borrower(borrower=user_of(request)))
    many_loans = len(loan_choices_for_borrower(borrower=user_of(request))) > 1
    [html] = rendered_rows([row], poll=_poll_context(poll + 1), many_loans=many_loans)
    return HttpResponse(html)


# --- Rendered rows, cached --------------------------------------------------------------

ROW_TEMPLATE = "portal/record.html#row"
ROW_CACHE_SECONDS = 24 * 3600


def rendered_rows(
    rows: list[PaymentRow], *, poll: dict[str, int] | None, many_loans: bool
) -> list[SafeString]:
    """Each record row's HTML, from the cache when this exact row was rendered before.

    Rendering the rows ({% translate %}, {% url %}) is most of the record page's
    template time. The key is a digest of everything the row shows (the presented
    ``PaymentRow``: status, note, times, method), the poll state, the language, the
    time zone and the version of the code, templates and translations that render it:
    any change to the payment or its attempts that changes what the row says gives a new
    key, so a cached row can never show an older state (e.g. "being confirmed" after
    success) than a fresh render would.
    """
    contexts = [
        {"row": row, "poll": poll if not row.status.is_final else None, "many_loans": many_loans}
        for row in rows
    ]
    keys = [_row_key(context) for context in contexts]
    cached = cache.get_many(keys)
    fresh = {
        key: render_to_string(ROW_TEMPLATE, context)
        for key, context in zip(keys, contexts, strict=True)
        if key not in cached
    }
    if fresh:
        cache.set_many(fresh, ROW_CACHE_SECONDS)
    found = {**cached, **fresh}
    return [mark_safe(found[key]) for key in keys]  # noqa: S308 - our own rendering


def _row_key(context: dict[str, Any]) -> str:
    shown = repr(
        (
            context["row"],
            context["poll"],
            context["many_loans"],
            translation.get_language(),
            timezone.get_current_timezone_name(),
            get_script_prefix(),
        )
    )
    digest = hashlib.sha256(shown.encode()).hexdigest()
    return f"portal:record-row:{_render_code_version()}:{digest}"


@login_required
@require_GET
def payment_detail(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """One payment: status, every step in plain words, and what the borrower can do now."""
    payment = _own_payment(request, public_id)
    is_poll = bool(request.htmx) and "poll" in request.GET  # type: ignore[attr-defined]
    poll = _poll_number(request) if is_poll else -1
    if is_poll and _ask_channel(payment):
        payment = _own_payment(request, public_id)
    context = _detail_context(request, payment, poll=poll + 1)
    template = "portal/payment_detail.html" + ("#live" if is_poll else "")
    return render(request, template, context)


def _detail_context(request: HttpRequest, payment: Payment, *, poll: int) -> dict[str, Any]:
    cards = cards_for_borrower(borrower=user_of(request))
    attempts = list(payment.attempts.all())
    row = payment_row(payment, cards)
    open_attempt = next((a for a in reversed(attempts) if a.status in OPEN_ATTEMPT_STATUSES), None)
    return {
        "payment": payment,
        "row": row,
        "steps": timeline_steps(payment),
        "trade_numbers": trade_numbers(attempts),
        "order_numbers": [a.out_trade_no for a in attempts],
        "next_action": _next_action(request, payment) if open_attempt else None,
        "fallback": _fallback_offer(payment, attempts, cards, open_attempt),
        "attempt_count": len(attempts),
        "poll": _poll_context(poll) if not row.status.is_final else None,
    }


def _next_action(request: HttpRequest, payment: Payment) -> dict[str, Any] | None:
    """The checkout page or QR content of the open order, kept from when it was made."""
    action = next_action_for(request, payment)
    if action is None:
        return None
    return {"qr": action.kind == "qr_code", "value": action.value}


def _fallback_offer(
    payment: Payment,
    attempts: list[PaymentAttempt],
    cards: list[Any],
    open_attempt: PaymentAttempt | None,
) -> list[Any] | None:
    """The methods to try next, the one to tap first on top; None when none may be offered."""
    if open_attempt is not None or payment.status not in FALLBACK_STATUSES:
        return None
    failed_channel = attempts[-1].channel if attempts else ""
    # The same availability as the method list, plus the channels this payment could
    # not reach just now: those are explained, never offered as a one-tap button.
    choice = fallback_choice_for(payment=payment, now=timezone.now())
    return method_choices(choice, cards, avoid_channel=failed_channel)


def _ask_channel(payment: Payment) -> bool:
    """Ask the channel about the open attempt now (rate-limited); True if it was asked."""
    if payment.status != PaymentStatus.PROCESSING:
        return False
    attempt = next((a for a in payment.attempts.all() if a.status in OPEN_ATTEMPT_STATUSES), None)
    if attempt is None:
        return False
    try:
        return attempt_query_now(attempt_id=attempt.pk, now=timezone.now())
    except Exception:
        # The page must answer even when the extra query cannot run; the janitor
        # asks again on its own schedule.
        logger.exception("immediate status query for payment %s failed", payment.public_id)
        return False


# --- Looking a payment up by the number the borrower has ------------------------------

TRADE_NUMBER = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


@dataclass(frozen=True)
class TradeNumberLookup:
    number: str = ""
    error: str = ""
    payment_id: UUID | None = None  # found: the borrower is sent to it
    missing: bool = False  # not among the borrower's payments: offer a dispute


def trade_number_lookup(raw: str | None, *, borrower: User) -> TradeNumberLookup:
    """Find the borrower's payment by 支付宝交易号 / 微信支付单号 / our order number.

    Only the borrower's own attempts are searched: a number that belongs to someone
    else reads exactly like one we do not know.
    """
    if raw is None:
        return TradeNumberLookup()
    number = raw.strip().replace(" ", "")
    if not TRADE_NUMBER.match(number):
        return TradeNumberLookup(
            number=raw.strip()[:64],
            error=_(
                "Enter the transaction number as shown in Alipay or WeChat Pay: "
                "6 to 64 letters and digits."
            ),
        )
    found = payments_by_trade_number(borrower=borrower, trade_no=number)
    if not found:
        return TradeNumberLookup(number=number, missing=True)
    return TradeNumberLookup(number=number, payment_id=found[0])


def _own_payment(request: HttpRequest, public_id: UUID) -> Payment:
    payment = payment_for_borrower(borrower=user_of(request), public_id=public_id)
    if payment is None:
        raise Http404
    return payment


def _poll_number(request: HttpRequest) -> int:
    try:
        return max(int(request.GET.get("poll", "0")), 0)
    except ValueError:
        return 0


def _poll_context(poll: int) -> dict[str, int] | None:
    """The next status check, or None once the page has asked MAX_POLLS times."""
    if poll >= MAX_POLLS:
        return None
    return {"number": poll, "delay": poll_delay(poll)}


def _day_start(day: date | None, *, plus_days: int = 0) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day + timedelta(days=plus_days), time.min))
