"""Signing in for a token: mobile number and password, locked out like the login page."""

from __future__ import annotations

import pytest

from repayments.api.throttling import AuthRateThrottle
from repayments.models import Role
from repayments.services.users import staff_create
from tests.api.conftest import API_NOW, Borrower, problem_of

pytestmark = pytest.mark.django_db
PASSWORD = "demo12345-Test"  # tests.conftest.make_borrower's


def sign_in(api, phone: str | None, password: str, address: str = "10.0.0.1", **extra):
    return api.post(
        "/api/v1/auth/token/",
        {"phone": phone, "password": password},
        format="json",
        REMOTE_ADDR=address,
        **extra,
    )


def test_a_token_for_phone_and_password_opens_the_api(api, alice: Borrower) -> None:
    response = sign_in(api, alice.user.phone, PASSWORD)
    assert response.status_code == 200
    token = response.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/loans/").status_code == 200


def test_a_stale_token_does_not_block_signing_in(api, alice: Borrower) -> None:
    api.credentials(HTTP_AUTHORIZATION="Token stale")
    assert sign_in(api, alice.user.phone, PASSWORD).status_code == 200


def test_wrong_password_is_a_translated_400(api, alice: Borrower) -> None:
    response = sign_in(api, alice.user.phone, "nope", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    body = problem_of(response)
    assert body["code"] == "invalid_credentials"
    assert body["detail"] == "The mobile number (or username) and password do not match."


def test_five_failures_lock_the_number_from_that_address(api, alice: Borrower) -> None:
    statuses = [sign_in(api, alice.user.phone, "wrong").status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]
    locked = sign_in(api, alice.user.phone, PASSWORD)  # even the right password
    assert locked.status_code == 429
    assert problem_of(locked)["code"] == "locked_out"
    assert locked["Retry-After"] == "900"  # AXES_COOLOFF_MINUTES
    assert "token" not in locked.json()
    # Carrier NAT: the same number from another address is not locked.
    assert sign_in(api, alice.user.phone, PASSWORD, address="10.0.0.2").status_code == 200


def test_staff_get_no_borrower_token(api) -> None:
    staff_create(
        username="agent",
        password="agent-pass-123",
        role=Role.SUPPORT_AGENT,
        full_name="A",
        now=API_NOW,
    )
    response = sign_in(api, "agent", "agent-pass-123")
    assert response.status_code == 403
    assert problem_of(response)["code"] == "permission_denied"


def test_signing_out_revokes_the_token(alice: Borrower) -> None:
    assert alice.client.delete("/api/v1/auth/token/").status_code == 204
    response = alice.client.get("/api/v1/loans/")
    assert response.status_code == 401
    assert problem_of(response)["code"] == "authentication_failed"


def test_token_requests_are_throttled_per_address(api, alice: Borrower, monkeypatch) -> None:
    monkeypatch.setattr(AuthRateThrottle, "THROTTLE_RATES", {"auth": "2/min"})
    statuses = [sign_in(api, "13900000000", "x").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    assert sign_in(api, alice.user.phone, PASSWORD, address="10.9.9.9").status_code == 200
