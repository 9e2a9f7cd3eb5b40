"""What each endpoint returns: shapes, formats (money strings, ISO times with offset,
lowercase enums), pagination, and bounded query counts on every list."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from repayments.models import ChannelSetting, Dispute
from tests.api.conftest import API_NOW, Borrower, problem_of
from tests.integration.helpers import pay

pytestmark = pytest.mark.django_db
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+08:00$")
MONEY = re.compile(r"^-?\d+\.\d\d$")


def test_loan_list_shows_outstanding_and_next_due(alice: Borrower) -> None:
    response = alice.client.get("/api/v1/loans/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    [loan] = body["results"]
    first = alice.loan.installments.get(number=1)
    assert loan["id"] == alice.loan.pk
    assert loan["contract_number"] == alice.loan.contract_number
    assert loan["principal"] == "100000.00"
    assert loan["status"] == "active"
    assert loan["next_due_date"] == "2026-02-05"
    assert loan["next_due_amount"] == f"{first.total_due - first.total_paid:.2f}"
    repaid = sum(i.principal_paid for i in alice.loan.installments.all())
    assert Decimal(loan["outstanding_principal"]) == Decimal("100000.00") - repaid
    assert MONEY.match(loan["outstanding_principal"])


def test_loan_detail_is_the_list_row(alice: Borrower) -> None:
    listed = alice.client.get("/api/v1/loans/").json()["results"][0]
    assert alice.client.get(f"/api/v1/loans/{alice.loan.pk}/").json() == listed


def test_schedule_lists_every_installment_with_parts_and_status(alice: Borrower) -> None:
    body = alice.client.get(f"/api/v1/loans/{alice.loan.pk}/schedule/").json()
    rows = body["installments"]
    assert [r["number"] for r in rows] == list(range(1, 13))
    first = rows[0]
    assert first["status"] == "partially_paid"  # the 100.00 paid in the fixture
    assert first["paid"] == "100.00"
    assert Decimal(first["remaining"]) == Decimal(first["total"]) - Decimal("100.00")
    assert {r["status"] for r in rows[1:]} == {"upcoming"}
    total_principal = sum(Decimal(r["principal"]) for r in rows)
    assert total_principal == Decimal("100000.00")  # rule 6, visible through the API


def test_repayments_carry_attempts_and_timeline(alice: Borrower) -> None:
    body = alice.client.get(f"/api/v1/loans/{alice.loan.pk}/repayments/").json()
    [payment] = body["results"]
    attempt = alice.payment.attempts.get()
    assert payment["id"] == str(alice.payment.public_id)
    assert payment["amount"] == "100.00"
    assert payment["status"] == "succeeded"
    assert payment["method"] == "bank_debit_card"
    assert payment["channel"] == "unionpay"
    assert payment["out_trade_no"] == attempt.out_trade_no
    assert ISO_WITH_OFFSET.match(payment["created_at"])
    assert ISO_WITH_OFFSET.match(payment["confirmed_at"])
    kinds = [event["kind"] for event in payment["timeline"]]
    assert kinds[0] == "created"
    assert "allocation" in kinds or "state_change" in kinds


def test_payment_options_explain_every_method(alice: Borrower) -> None:
    ChannelSetting.objects.filter(channel="wechatpay").update(is_enabled=False)
    url = f"/api/v1/loans/{alice.loan.pk}/payment-options/?amount=100.00"
    body = alice.client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()
    options = {o["method"]: o for o in body["options"]}
    assert len(options) == 6
    assert options["wechatpay_balance"]["available"] is False
    assert options["wechatpay_balance"]["reason_code"] == "channel_disabled"
    assert options["wechatpay_balance"]["message"]
    assert options["alipay_huabei"]["reason_code"] == "not_allowed_by_product"
    assert body["recommended"] in {m for m, o in options.items() if o["available"]}
    assert options[body["recommended"]]["recommended"] is True
    assert sum(o["recommended"] for o in options.values()) == 1


def test_payment_options_need_a_valid_amount(alice: Borrower) -> None:
    for bad in ("", "abc", "1.234", "-5", "0", "1e3"):
        response = alice.client.get(f"/api/v1/loans/{alice.loan.pk}/payment-options/?amount={bad}")
        assert response.status_code == 400, bad
        [error] = problem_of(response)["errors"]
        assert error["field"] == "amount"


def test_settlement_quote_round_trip(alice: Borrower) -> None:
    url = f"/api/v1/loans/{alice.loan.pk}/settlement-quotes/"
    created = alice.client.post(url, {"settlement_date": "2026-01-30"}, format="json")
    assert created.status_code == 201, created.content
    quote = created.json()
    assert quote["settlement_date"] == "2026-01-30"
    assert ISO_WITH_OFFSET.match(quote["valid_until"])
    lines = sum(Decimal(line["amount"]) for line in quote["lines"])
    assert lines == Decimal(quote["gross_total"])
    assert Decimal(quote["gross_total"]) - Decimal(quote["credit_applied"]) == Decimal(
        quote["total"]
    )
    assert {line["component"] for line in quote["lines"]} >= {"principal", "interest"}
    fetched = alice.client.get(f"{url}{quote['id']}/")
    assert fetched.json() == quote


def test_settlement_quote_for_a_past_date_is_a_field_error(alice: Borrower) -> None:
    url = f"/api/v1/loans/{alice.loan.pk}/settlement-quotes/"
    response = alice.client.post(url, {"settlement_date": "2025-01-01"}, format="json")
    assert response.status_code == 400
    body = problem_of(response)
    assert body["code"] == "invalid_settlement_date"
    assert body["errors"][0]["field"] == "settlement_date"


def test_unknown_quote_id_is_404(alice: Borrower) -> None:
    base = f"/api/v1/loans/{alice.loan.pk}/settlement-quotes/"
    for quote_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert alice.client.get(f"{base}{quote_id}/").status_code == 404


def test_dispute_links_the_payment_from_the_trade_number(alice: Borrower) -> None:
    attempt = alice.payment.attempts.get()
    response = alice.client.post(
        "/api/v1/disputes/",
        {
            "loan": alice.loan.pk,
            "category": "amount_mismatch",
            "description": "  The posted amount is wrong  ",
            "trade_no": attempt.out_trade_no,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["payment"] == str(alice.payment.public_id)
    assert body["status"] == "open"
    assert body["description"] == "The posted amount is wrong"
    assert alice.client.get(f"/api/v1/disputes/{body['id']}/").json() == body


def test_dispute_with_a_blank_description_is_a_field_error(alice: Borrower) -> None:
    response = alice.client.post(
        "/api/v1/disputes/",
        {"loan": alice.loan.pk, "category": "other", "description": "   "},
        format="json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 400
    assert problem_of(response)["errors"][0]["field"] == "description"
    assert Dispute.objects.filter(loan=alice.loan).count() == 1  # the fixture's only


def test_notices_show_channel_and_delivery(alice: Borrower) -> None:
    [notice] = alice.client.get("/api/v1/notices/").json()["results"]
    assert notice["kind"] == "payment_succeeded"
    assert notice["status"] == "delivered"
    assert notice["channel"] == "sms"
    assert notice["deliveries"][0]["status"] == "delivered"


# --- Query counts ---------------------------------------------------------------------


@pytest.fixture
def busy(make_api_borrower: Callable[[], Borrower], make_loan) -> Borrower:
    """A borrower with three loans, eight payments and several disputes and notices."""
    borrower = make_api_borrower()
    for _ in range(2):
        make_loan(borrower=borrower.user)
    for _ in range(7):
        pay(borrower.loan, "10.00", API_NOW)
    return borrower


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


LIST_URLS = [
    "/api/v1/loans/",
    "/api/v1/loans/{loan}/repayments/",
    "/api/v1/loans/{loan}/schedule/",
    "/api/v1/disputes/",
    "/api/v1/notices/",
]


@pytest.mark.parametrize("url", LIST_URLS)
def test_list_queries_do_not_grow_with_rows(
    url: str, alice: Borrower, busy: Borrower, django_assert_max_num_queries
) -> None:
    few = count_queries(alice.client, url.format(loan=alice.loan.pk))
    many = count_queries(busy.client, url.format(loan=busy.loan.pk))
    assert many == few, (few, many)
    with django_assert_max_num_queries(8):
        busy.client.get(url.format(loan=busy.loan.pk))


def test_lists_are_paginated(busy: Borrower) -> None:
    url = f"/api/v1/loans/{busy.loan.pk}/repayments/?page_size=3"
    first = busy.client.get(url).json()
    assert first["count"] == 8
    assert len(first["results"]) == 3
    assert first["next"]
    assert busy.client.get(f"{url}&page=99").status_code == 404


def test_dates_in_the_schedule_are_plain_dates(alice: Borrower) -> None:
    rows = alice.client.get(f"/api/v1/loans/{alice.loan.pk}/schedule/").json()["installments"]
    assert date.fromisoformat(rows[0]["due_date"]) == date(2026, 2, 5)


def test_schema_and_docs_are_public(api) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    operation = schema.json()["paths"]["/api/v1/payments/"]["post"]
    [key] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["required"] is True
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "application/problem+json" in operation["responses"]["409"]["content"]
    assert api.get("/api/docs/").status_code == 200
