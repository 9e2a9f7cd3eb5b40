"""Fuzz the published contract: schemathesis loads /api/schema/ through the WSGI app and
runs the stateless checks on every operation with a demo borrower's token.

Checks: not_a_server_error (no 5xx on any input), response_schema_conformance (bodies
match the schema) and status_code_conformance (every status is documented). Half the
cases use the borrower's real ids, so the fuzzing reaches real loans, quotes, payments
(through the channel sandbox) and disputes, not just 404s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from repayments.api.throttling import AuthRateThrottle, BorrowerRateThrottle, PaymentRateThrottle
from repayments.models import Loan, User
from repayments.services.demo import DEMO_PHONES, demo_seed
from repayments.services.settlement import settlement_quote_create
from tests.api.conftest import API_NOW, PortalChannels

pytestmark = pytest.mark.django_db
EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture
def wsgi_in_test_transaction() -> Iterator[None]:
    """Like Django's test client: keep the test's connection (and transaction) open
    across requests made through the raw WSGI app."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def generous_rates(monkeypatch) -> None:
    """Throttling is tested elsewhere; here it would turn most cases into 429s."""
    for throttle, scope in (
        (BorrowerRateThrottle, "borrower"),
        (PaymentRateThrottle, "payments"),
        (AuthRateThrottle, "auth"),
    ):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", {scope: "100000/min"})


def own_ids(user: User) -> dict[str, Any]:
    loan = Loan.objects.filter(borrower=user, status="active").first() or user.loans.first()
    assert loan is not None
    quote = settlement_quote_create(loan=loan, settlement_date=date(2026, 1, 25), now=API_NOW)
    payment = user.payments.first()
    return {
        "loan": loan.pk,
        "quote": str(quote.public_id),
        "payment": str(payment.public_id) if payment else None,
        "dispute": None,
    }


def pin(case: Any, ids: dict[str, Any]) -> None:
    """Point a generated case at the borrower's own objects."""
    path = case.operation.path
    params = case.path_parameters or {}
    if "id" in params:
        if path.startswith("/api/v1/loans/"):
            params["id"] = ids["loan"]
        elif path.startswith("/api/v1/payments/") and ids["payment"]:
            params["id"] = ids["payment"]
        elif path.startswith("/api/v1/disputes/") and ids["dispute"]:
            params["id"] = ids["dispute"]
    if "quote_id" in params:
        params["quote_id"] = ids["quote"]
    if isinstance(case.body, dict):
        for field in ("loan", "quote", "payment"):
            if field in case.body and ids.get(field):
                case.body[field] = ids[field]


def test_schemathesis_stateless_checks_pass(
    portal_channels: PortalChannels, wsgi_in_test_transaction, generous_rates, capsys
) -> None:
    from portal.wsgi import application

    demo_seed(now=API_NOW)
    borrower = User.objects.get(phone=DEMO_PHONES[0])
    token = Token.objects.create(user=borrower).key
    ids = own_ids(borrower)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    counts: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()

    for operation in operations:

        @given(case=operation.as_strategy(), own=st.booleans())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, own: bool) -> None:
            if own:
                pin(case, ids)
            response = case.call(headers={"Authorization": f"Token {token}"})
            counts["cases"] += 1
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:  # each failing check, collected for the summary
                failures.extend(f"{case.operation.label}: {exc}"[:2000] for exc in group.exceptions)
            # DELETE /auth/token/ signs out; put the same token back for the next case.
            Token.objects.get_or_create(user=borrower, defaults={"key": token})
            if response.status_code == 201 and case.operation.path == "/api/v1/disputes/":
                ids["dispute"] = response.json()["id"]

        run()

    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nschemathesis: {len(operations)} operations, {counts['cases']} test cases, "
            f"{len(failures)} failures in {elapsed:.0f}s; statuses {dict(sorted(statuses.items()))}"
        )
        for failure in failures[:10]:
            print("  FAIL", failure)
    assert len(operations) == 15
    assert not failures
