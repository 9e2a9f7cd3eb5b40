"""The borrower's schedule and early-settlement pages (issue 7).

Pages are read in English (the ``django_language`` cookie) so the assertions do not
depend on the Chinese catalogue; amounts and ids are checked as data.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone, translation

from repayments.domain.money import format_yuan
from repayments.domain.states import PaymentStatus
from repayments.models import (
    Loan,
    LoanStatus,
    Payment,
    PaymentMethodType,
    PaymentPurpose,
    SettlementQuote,
    User,
)
from repayments.services.settlement import settlement_quote_create
from tests.conftest import at
from tests.integration.conftest import PortalChannels
from tests.integration.helpers import pay
from tests.integration.test_portal_pages import bind_card

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()  # submit locks live here


@pytest.fixture
def borrower(make_borrower) -> User:
    return make_borrower()


@pytest.fixture
def loan(make_loan, borrower) -> Loan:
    # Two installments already due (one of them past its grace period), ten to come.
    return make_loan(borrower=borrower, start_date=timezone.localdate() - timedelta(days=70))


@pytest.fixture
def signed_in(client, borrower):
    client.force_login(borrower)
    client.cookies["django_language"] = "en"
    return client


def text(response: Any) -> str:
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html_lib.unescape(body))


def installment_block(response: Any, number: int) -> str:
    """The visible text of one installment's card."""
    html = response.content.decode()
    match = re.search(rf'id="installment-{number}">(.*?)</li>', html, re.S)
    assert match, f"installment {number} not on the page"
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", match.group(1))))


# --- Schedule --------------------------------------------------------------------------


def test_schedule_lists_every_installment_with_each_amount_and_a_worded_status(
    signed_in, loan
) -> None:
    first = loan.installments.get(number=1)
    # The channel accepted the money on the due date; the confirmation came 9 days
    # later. On time is judged by the value date (rule 7).
    pay(
        loan,
        first.total_due,
        at(first.due_date + timedelta(days=9), 10),
        accepted_at=at(first.due_date, 22),
    )

    response = signed_in.get(reverse("schedule", args=[loan.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="installment ') == loan.installments.count() == 12
    one = installment_block(response, 1)
    assert "Paid on time" in one
    assert f"Principal {format_yuan(first.principal_due)}" in one
    assert f"Interest {format_yuan(first.interest_due)}" in one
    assert f"Paid {format_yuan(first.total_due)}" in one
    assert "Remaining ¥0.00" in one
    assert f"Paid on (value date) {first.due_date.isoformat()}" in one
    # The second installment is past its grace period: overdue, with a penalty to today.
    two = installment_block(response, 2)
    assert "Overdue" in two
    assert "Late penalty ¥0.00" not in two
    assert "Next" in two  # the oldest unpaid one is marked
    assert "Next" not in installment_block(response, 3)
    three = installment_block(response, 3)
    assert "Not yet due" in three
    assert "Late penalty ¥0.00" in three
    assert "Fee ¥0.00" in three


def test_a_value_date_after_the_grace_period_shows_paid_late(signed_in, loan) -> None:
    first = loan.installments.get(number=1)
    late = first.due_date + timedelta(days=loan.product.grace_days + 1)
    pay(loan, first.total_due + Decimal("50.00"), at(late, 10))

    one = installment_block(signed_in.get(reverse("schedule", args=[loan.pk])), 1)
    assert "Paid late" in one
    assert "Paid on time" not in one


def test_schedule_query_count_does_not_grow_with_the_term(
    signed_in, make_loan, borrower, django_assert_max_num_queries
) -> None:
    short = make_loan(borrower=borrower, term_months=6)
    long = make_loan(borrower=borrower, term_months=60)
    signed_in.get(reverse("home"))  # the first request after sign-in records last-seen
    # Session (read; written at most once a minute, portal.middleware), user, loan with
    # its product, installments.
    with django_assert_max_num_queries(7) as few:
        assert signed_in.get(reverse("schedule", args=[short.pk])).status_code == 200
    with django_assert_max_num_queries(7) as many:
        response = signed_in.get(reverse("schedule", args=[long.pk]))
    assert response.content.decode().count('class="installment ') == 60
    assert len(many.captured_queries) == len(few.captured_queries)


def test_schedule_totals_add_up_to_the_loan(signed_in, loan) -> None:
    response = signed_in.get(reverse("schedule", args=[loan.pk]))
    principal = sum(i.principal_due for i in loan.installments.all())
    assert principal == loan.principal
    assert f"Remaining {format_yuan(response.context['totals'].remaining)}" in text(response)
    assert response.context["totals"].principal == loan.principal


# --- Early settlement ------------------------------------------------------------------


def _quote_url(loan: Loan, quote: SettlementQuote) -> str:
    return reverse("settlement-quote", args=[loan.pk, quote.public_id])


def test_settlement_date_defaults_to_today_and_the_quote_shows_every_line(
    signed_in, loan, borrower
) -> None:
    bind_card(borrower)  # the wallets' per-payment limits are below this quote
    page = signed_in.get(reverse("settlement", args=[loan.pk]))
    today = timezone.localdate().isoformat()
    assert page.status_code == 200
    assert f'value="{today}"' in page.content.decode()

    response = signed_in.post(reverse("settlement", args=[loan.pk]), {"settlement_date": today})

    quote = SettlementQuote.objects.get(loan=loan)
    assert response.status_code == 302
    assert response["Location"] == _quote_url(loan, quote)
    shown = text(signed_in.get(response["Location"]))
    with translation.override("en"):
        labels = dict(quote.breakdown())
    for label in (
        "Outstanding principal",
        "Interest to the settlement date",
        "Late penalties",
        "Early-settlement fee",
    ):
        assert f"{label} {format_yuan(labels[label])}" in shown
    assert f"Amount to pay {format_yuan(quote.total)}" in shown
    assert timezone.localtime(quote.valid_until).strftime("%Y-%m-%d %H:%M") in shown
    assert "Pay this quote" in shown


@pytest.mark.parametrize("bad", ["", "05/03/2026", "1999-01-01", "2999-01-01"])
def test_a_bad_settlement_date_gets_a_field_error_and_no_quote(signed_in, loan, bad) -> None:
    response = signed_in.post(reverse("settlement", args=[loan.pk]), {"settlement_date": bad})
    assert response.status_code == 400
    shown = text(response)
    assert any(
        words in shown
        for words in (
            "Choose the date you want to settle on.",
            "Enter a date like",
            "Choose a date from",
        )
    )
    assert not SettlementQuote.objects.filter(loan=loan).exists()


def test_an_expired_quote_cannot_be_paid_and_offers_a_fresh_one(signed_in, loan, borrower) -> None:
    now = timezone.now()
    quote = settlement_quote_create(loan=loan, settlement_date=timezone.localdate(), now=now)
    SettlementQuote.objects.filter(pk=quote.pk).update(valid_until=now - timedelta(minutes=1))

    page = signed_in.get(_quote_url(loan, quote))
    shown = text(page)
    assert "This quote has expired" in shown
    assert "Get a fresh quote" in shown
    assert "Pay this quote" not in shown

    paid = signed_in.post(
        reverse("settlement-pay", args=[loan.pk, quote.public_id]),
        {"method": PaymentMethodType.ALIPAY_BALANCE.value, "idempotency_key": uuid.uuid4().hex},
    )
    assert paid.status_code == 409
    assert "This quote has expired" in text(paid)
    assert not Payment.objects.filter(borrower=borrower).exists()

    fresh = signed_in.post(
        reverse("settlement", args=[loan.pk]),
        {"settlement_date": timezone.localdate().isoformat()},
    )
    newer = SettlementQuote.objects.filter(loan=loan).exclude(pk=quote.pk).get()
    assert fresh["Location"] == _quote_url(loan, newer)
    assert newer.valid_until > timezone.now()


def test_paying_the_quote_binds_the_payment_to_it_and_settles_the_loan(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    bind_card(borrower)
    signed_in.post(
        reverse("settlement", args=[loan.pk]),
        {"settlement_date": timezone.localdate().isoformat()},
    )
    quote = SettlementQuote.objects.get(loan=loan)
    key = uuid.uuid4().hex
    data = {"method": PaymentMethodType.BANK_DEBIT_CARD.value, "idempotency_key": key}

    first = signed_in.post(reverse("settlement-pay", args=[loan.pk, quote.public_id]), data)
    again = signed_in.post(reverse("settlement-pay", args=[loan.pk, quote.public_id]), data)

    payment = Payment.objects.get(borrower=borrower)  # the double submit made no second one
    assert first.status_code == 302
    assert first["Location"] == again["Location"]
    assert first["Location"] == reverse("payment-detail", args=[payment.public_id])
    assert payment.quote_id == quote.pk
    assert payment.purpose == PaymentPurpose.EARLY_SETTLEMENT
    assert payment.amount == quote.total
    assert portal_channels.sandbox.sandbox.ledger.requests["unionpay.debits"] == 1

    [ack] = portal_channels.relay(expected=1)
    assert ack.status_code == 200
    payment.refresh_from_db()
    loan.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert loan.status == LoanStatus.SETTLED_EARLY
    # A settled loan offers no settlement any more.
    assert signed_in.get(reverse("settlement", args=[loan.pk]))["Location"] == reverse("home")


def test_an_unavailable_method_is_refused_with_its_reason_and_nothing_is_created(
    signed_in, loan, borrower
) -> None:
    quote = settlement_quote_create(
        loan=loan, settlement_date=timezone.localdate(), now=timezone.now()
    )
    response = signed_in.post(
        reverse("settlement-pay", args=[loan.pk, quote.public_id]),
        # No card bound: withholding cannot be used.
        {"method": PaymentMethodType.BANK_DEBIT_CARD.value, "idempotency_key": uuid.uuid4().hex},
    )
    assert response.status_code == 409
    assert response.context["form"].errors["method"]
    assert not Payment.objects.filter(borrower=borrower).exists()


def test_a_missing_method_is_a_field_error(signed_in, loan) -> None:
    quote = settlement_quote_create(
        loan=loan, settlement_date=timezone.localdate(), now=timezone.now()
    )
    response = signed_in.post(
        reverse("settlement-pay", args=[loan.pk, quote.public_id]),
        {"idempotency_key": uuid.uuid4().hex},
    )
    assert response.status_code == 400
    assert "Please choose a payment method." in text(response)


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("schedule", "get"),
        ("settlement", "get"),
        ("settlement", "post"),
        ("settlement-quote", "get"),
        ("settlement-pay", "post"),
    ],
)
def test_another_borrowers_loan_or_quote_gives_404(
    signed_in, loan, make_loan, name: str, method: str
) -> None:
    foreign = make_loan()
    foreign_quote = settlement_quote_create(
        loan=foreign, settlement_date=timezone.localdate(), now=timezone.now()
    )
    data = {
        "settlement_date": timezone.localdate().isoformat(),
        "method": PaymentMethodType.ALIPAY_BALANCE.value,
        "idempotency_key": uuid.uuid4().hex,
    }
    if name.startswith("settlement-"):
        # Their quote under their loan id, and their quote under my own loan id.
        urls = [
            reverse(name, args=[foreign.pk, foreign_quote.public_id]),
            reverse(name, args=[loan.pk, foreign_quote.public_id]),
        ]
    else:
        urls = [reverse(name, args=[foreign.pk])]
    for url in urls:
        response = getattr(signed_in, method)(url, data if method == "post" else {})
        assert response.status_code == 404, url
    assert SettlementQuote.objects.filter(loan=foreign).count() == 1
    assert not Payment.objects.exists()


def test_visitors_are_sent_to_sign_in(client, loan) -> None:
    for url in (reverse("schedule", args=[loan.pk]), reverse("settlement", args=[loan.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
