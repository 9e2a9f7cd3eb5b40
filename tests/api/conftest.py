"""API fixtures: a fixed clock, token clients, and two borrowers who must not see each other.

The sandbox fixtures are the integration ones, re-exported so API tests can pay
through the channel sandbox over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from notifications.models import Delivery, DeliveryChannel, DeliveryStatus, Notice, NoticeStatus
from repayments.models import BoundCard, Channel, Dispute, Loan, Payment, SettlementQuote, User
from repayments.services.disputes import dispute_open
from repayments.services.settlement import settlement_quote_create
from tests.conftest import at
from tests.integration.conftest import (  # noqa: F401  (fixtures, re-exported)
    PortalChannels,
    portal_channels,
    running_sandbox,
    sandbox_channels,
)
from tests.integration.helpers import pay

# Every API test runs on this clock (ticking): the loans built by make_loan start on
# 2026-01-05, so nothing is due yet and the first installment is due on 2026-02-05.
API_NOW = at(date(2026, 1, 20), 10)


@pytest.fixture(scope="session")
def api_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("api-keys")
    with override_settings(KEYS_DIR=keys):
        call_command("generate_channel_keys", verbosity=0)
    return keys


@pytest.fixture
def channel_keys(api_keys_dir: Path, settings: Any) -> Path:
    """The keys the sandbox and the adapters share, for this test only.

    Not the integration suite's session fixture re-exported: a second session
    instance of that one would point the global KEYS_DIR at its own keys while the
    other instance's sandbox and adapters still use theirs.
    """
    settings.KEYS_DIR = api_keys_dir
    return api_keys_dir


@pytest.fixture(autouse=True)
def api_clock() -> Iterator[datetime]:
    with time_machine.travel(API_NOW, tick=True):
        yield API_NOW


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Throttle counters, idempotency locks and query-now limits start empty."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def client_for(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@dataclass
class Borrower:
    user: User
    loan: Loan
    payment: Payment
    quote: SettlementQuote
    dispute: Dispute
    notice: Notice
    card: BoundCard
    client: APIClient


@pytest.fixture
def make_api_borrower(make_loan: Callable[..., Loan]) -> Callable[[], Borrower]:
    """A borrower with one of everything the API exposes, built through the services."""

    def build() -> Borrower:
        loan = make_loan()
        user = loan.borrower
        card = BoundCard.objects.create(
            borrower=user,
            channel=Channel.UNIONPAY,
            card_token=f"tok-{user.pk}",
            card_masked="6222 **** **** 1234",
            bank_name="ICBC",
            verified_until=date(2028, 12, 31),
        )
        payment = pay(loan, "100.00", API_NOW)
        quote = settlement_quote_create(loan=loan, settlement_date=date(2026, 1, 25), now=API_NOW)
        dispute = dispute_open(
            borrower=user,
            loan=loan,
            payment=payment,
            category="paid_not_shown",
            description="Paid on Alipay, not shown",
            now=API_NOW,
        )
        notice = Notice.objects.create(
            recipient=user,
            kind="payment_succeeded",
            subject_type="payment",
            subject_id=payment.pk,
            announced_state="succeeded",
            dedupe_key=f"test:{payment.pk}",
            body="还款成功",
            status=NoticeStatus.DELIVERED,
            not_before=API_NOW,
            state_changed_at=API_NOW,
            created_at=API_NOW,
            delivered_at=API_NOW,
        )
        Delivery.objects.create(
            notice=notice,
            channel=DeliveryChannel.SMS,
            provider="file",
            status=DeliveryStatus.DELIVERED,
            attempted_at=API_NOW,
        )
        return Borrower(user, loan, payment, quote, dispute, notice, card, client_for(user))

    return build


@pytest.fixture
def alice(make_api_borrower: Callable[[], Borrower]) -> Borrower:
    return make_api_borrower()


@pytest.fixture
def bob(make_api_borrower: Callable[[], Borrower]) -> Borrower:
    return make_api_borrower()


def problem_of(response: Any) -> dict[str, Any]:
    """The problem-details body, after checking it has the documented shape."""
    assert response["Content-Type"] == "application/problem+json", response.content
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == response.status_code
    assert body["type"] == f"urn:anxin-repay:problem:{body['code']}"
    return body
