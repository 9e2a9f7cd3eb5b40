"""Rule 8 through the API: each borrower sees only their own; ids of others are 404.

The matrix below is every endpoint that takes an id (in the path or the body),
called by Bob with Alice's ids. It must be 404, never 403 (that would confirm the
object exists) and never 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from repayments.models import Role
from repayments.services.users import staff_create
from tests.api.conftest import API_NOW, Borrower, client_for, problem_of

pytestmark = pytest.mark.django_db

# (name, method, path, body); {x} are Alice's objects, {own_*} are Bob's.
FOREIGN_IDS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("loan detail", "get", "/api/v1/loans/{loan}/", None),
    ("loan schedule", "get", "/api/v1/loans/{loan}/schedule/", None),
    ("loan repayments", "get", "/api/v1/loans/{loan}/repayments/", None),
    ("payment options", "get", "/api/v1/loans/{loan}/payment-options/?amount=100.00", None),
    ("quote create", "post", "/api/v1/loans/{loan}/settlement-quotes/", {}),
    ("quote detail", "get", "/api/v1/loans/{loan}/settlement-quotes/{quote}/", None),
    ("quote via own loan", "get", "/api/v1/loans/{own_loan}/settlement-quotes/{quote}/", None),
    ("payment detail", "get", "/api/v1/payments/{payment}/", None),
    (
        "pay a foreign loan",
        "post",
        "/api/v1/payments/",
        {"loan": "{loan}", "amount": "100.00", "method": "alipay_balance"},
    ),
    (
        "pay with a foreign quote",
        "post",
        "/api/v1/payments/",
        {"loan": "{own_loan}", "quote": "{quote}", "method": "alipay_balance"},
    ),
    (
        "pay with a foreign card",
        "post",
        "/api/v1/payments/",
        {"loan": "{own_loan}", "amount": "100.00", "method": "bank_debit_card", "card": "{card}"},
    ),
    ("dispute detail", "get", "/api/v1/disputes/{dispute}/", None),
    (
        "dispute a foreign loan",
        "post",
        "/api/v1/disputes/",
        {"loan": "{loan}", "category": "other", "description": "x"},
    ),
    (
        "dispute a foreign payment",
        "post",
        "/api/v1/disputes/",
        {"loan": "{own_loan}", "payment": "{payment}", "category": "other", "description": "x"},
    ),
]
LISTS = ["/api/v1/loans/", "/api/v1/disputes/", "/api/v1/notices/"]
EVERY_ENDPOINT = [(m, p, b) for _, m, p, b in FOREIGN_IDS] + [("get", p, None) for p in LISTS]
EVERY_ENDPOINT.append(("delete", "/api/v1/auth/token/", None))


def ids(alice: Borrower, bob: Borrower) -> dict[str, Any]:
    return {
        "loan": alice.loan.pk,
        "quote": alice.quote.public_id,
        "payment": alice.payment.public_id,
        "dispute": alice.dispute.public_id,
        "card": alice.card.pk,
        "own_loan": bob.loan.pk,
    }


def fill(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        found = names[value[1:-1]]
        return found if isinstance(found, int) else str(found)
    return value.format(**names) if isinstance(value, str) else value


def call(client: APIClient, method: str, path: str, body: Any, **extra: Any) -> Any:
    sender: Callable[..., Any] = getattr(client, method)
    if body is None:
        return sender(path, **extra)
    return sender(path, body, format="json", HTTP_IDEMPOTENCY_KEY="perm-test-key", **extra)


@pytest.mark.parametrize(("name", "method", "path", "body"), FOREIGN_IDS, ids=lambda x: x)
def test_another_borrowers_ids_are_not_found(alice, bob, name, method, path, body) -> None:
    names = ids(alice, bob)
    response = call(bob.client, method, fill(path, names), fill(body, names))
    assert response.status_code == 404, (name, response.content)
    assert problem_of(response)["code"] == "not_found"


def test_lists_hold_only_the_callers_own(alice, bob) -> None:
    loans = bob.client.get("/api/v1/loans/").json()["results"]
    disputes = bob.client.get("/api/v1/disputes/").json()["results"]
    notices = bob.client.get("/api/v1/notices/").json()["results"]
    repayments = bob.client.get(f"/api/v1/loans/{bob.loan.pk}/repayments/").json()["results"]
    assert [loan["id"] for loan in loans] == [bob.loan.pk]
    assert [d["id"] for d in disputes] == [str(bob.dispute.public_id)]
    assert [n["id"] for n in notices] == [bob.notice.pk]
    assert [p["id"] for p in repayments] == [str(bob.payment.public_id)]


def test_nothing_was_written_for_the_refused_requests(alice, bob) -> None:
    names = ids(alice, bob)
    for _, method, path, body in FOREIGN_IDS:
        call(bob.client, method, fill(path, names), fill(body, names))
    assert alice.loan.payments.count() == 1
    assert alice.loan.quotes.count() == 1
    assert bob.loan.payments.count() == 1
    assert alice.loan.disputes.count() == bob.loan.disputes.count() == 1


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ENDPOINT, ids=str)
def test_anonymous_callers_get_401(alice, bob, api, method, path, body) -> None:
    names = ids(alice, bob)
    response = call(api, method, fill(path, names), fill(body, names))
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert problem_of(response)["code"] == "not_authenticated"


def test_a_bad_token_is_401(api) -> None:
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api.get("/api/v1/loans/")
    assert response.status_code == 401
    assert problem_of(response)["code"] == "authentication_failed"


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ENDPOINT[:-1], ids=str)
def test_staff_are_refused_the_borrower_api(alice, bob, method, path, body) -> None:
    agent = staff_create(
        username="agent",
        password="agent-pass-123",
        role=Role.SUPPORT_AGENT,
        full_name="Agent",
        now=API_NOW,
    )
    names = ids(alice, bob)
    response = call(client_for(agent), method, fill(path, names), fill(body, names))
    assert response.status_code == 403, response.content
    assert problem_of(response)["code"] == "permission_denied"


def test_a_session_cookie_also_signs_in(alice) -> None:
    client = APIClient()
    client.force_login(alice.user, backend="repayments.auth.PhoneOrUsernameBackend")
    response = client.get("/api/v1/loans/")
    assert response.status_code == 200
    assert [loan["id"] for loan in response.json()["results"]] == [alice.loan.pk]
