"""Two (or six) requests with one Idempotency-Key at the same moment make one payment
(rule 3), on PostgreSQL with real threads, real transactions and the sandbox."""

from __future__ import annotations

from contextlib import nullcontext
from importlib import import_module
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from repayments.api import payments as api_payments
from repayments.models import ChannelSetting, Payment, PaymentAttempt
from tests.api.conftest import PortalChannels
from tests.integration.test_concurrency_postgres import race

# Plain transactional tests, as in tests/integration. Not serialized_rollback: that
# reloads the database as migrated, content types included, with their original
# ids; after another transactional test's flush has recreated the content types
# under new ids, the reload fails on their unique (app_label, model).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
CHANNEL_DEFAULTS = import_module("repayments.migrations.0004_default_channel_settings").DEFAULTS


@pytest.fixture
def channel_settings() -> None:
    """The rows migration 0004 adds, which choosing a payment method reads; a
    transactional test's flush removes them."""
    for channel, priority, limit in CHANNEL_DEFAULTS:
        ChannelSetting.objects.get_or_create(
            channel=channel, defaults={"priority": priority, "single_payment_limit": limit}
        )


def _post_all(loan: Any, workers: int) -> list[Any]:
    token = f"Token {Token.objects.get_or_create(user=loan.borrower)[0].key}"
    body = {"loan": loan.pk, "amount": "500.00", "method": "bank_debit_card"}

    def post(_: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=token)
        response = client.post(
            "/api/v1/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        return response.status_code

    return race(workers, post)


def _with_card(loan: Any) -> Any:
    from repayments.models import BoundCard

    BoundCard.objects.create(
        borrower=loan.borrower,
        channel="unionpay",
        card_token=f"tok-race-{loan.pk}",
        card_masked="6222 **** **** 0001",
        bank_name="ICBC",
    )
    return loan


def test_concurrent_same_key_requests_make_one_payment(
    make_loan, portal_channels: PortalChannels, channel_settings: None
) -> None:
    loan = _with_card(make_loan())
    statuses = _post_all(loan, 6)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 200, 409}, statuses
    assert Payment.objects.filter(loan=loan).count() == 1
    [attempt] = PaymentAttempt.objects.filter(loan=loan)
    debits = portal_channels.sandbox.sandbox.ledger.requests.get("unionpay.debits", 0)
    assert debits == 1, (attempt.status, attempt.failure_code)


def test_without_the_in_flight_guard_the_database_still_allows_one(
    make_loan, portal_channels: PortalChannels, channel_settings: None, monkeypatch
) -> None:
    """The guard is a courtesy; the unique key and one-open-attempt constraints decide."""
    monkeypatch.setattr(api_payments, "in_flight_guard", lambda **_: nullcontext())
    loan = _with_card(make_loan())
    statuses = _post_all(loan, 6)
    assert 201 in statuses, statuses
    assert set(statuses) <= {201, 200, 409}, statuses
    assert Payment.objects.filter(loan=loan).count() == 1
    [attempt] = PaymentAttempt.objects.filter(loan=loan)
    debits = portal_channels.sandbox.sandbox.ledger.requests.get("unionpay.debits", 0)
    assert debits == 1, (attempt.status, attempt.failure_code)
