"""Risk thresholds are kept in admin, audited, and the method list follows them at once."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.test import Client

from repayments.domain.availability import Reason
from repayments.domain.states import AttemptStatus
from repayments.models import AuditEntry, PaymentAttempt, RiskRules
from repayments.services.methods import UNREACHABLE_FAILURE_CODE, payment_choice_for
from tests.conftest import at
from tests.integration.helpers import open_attempt, report

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)
URL = f"/admin/repayments/riskrules/{RiskRules.SINGLE_ROW}/change/"


def _options(loan: Any) -> dict[str, Any]:
    choice = payment_choice_for(loan=loan, amount="100.00", now=NOW)
    return {o.option.method_type: o.option for o in choice.options}


def _form(**overrides: int) -> dict[str, int]:
    data = {
        "max_attempts_per_hour": 5,
        "circuit_min_attempts": 5,
        "circuit_failure_percent": 50,
        "circuit_cool_off_seconds": 60,
    }
    return data | overrides


def _failed_attempts(loan: Any, count: int) -> None:
    for _ in range(count):
        _, attempt = open_attempt(loan, "100.00", NOW - timedelta(minutes=3))
        report(attempt, AttemptStatus.FAILED, NOW - timedelta(minutes=3))


def test_the_single_row_exists_with_the_defaults() -> None:
    rules = RiskRules.objects.get()
    assert (rules.max_attempts_per_hour, rules.circuit_failure_percent) == (5, 50)


def test_lowering_the_attempt_limit_in_admin_applies_to_the_next_list(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    _failed_attempts(loan, 2)
    assert _options(loan)["alipay_balance"].available

    response = admin_client.post(URL, _form(max_attempts_per_hour=2))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert _options(loan)["alipay_balance"].reason == Reason.TOO_MANY_ATTEMPTS
    entry = AuditEntry.objects.filter(action="riskrules.changed").latest("id")
    assert entry.data["changes"]["max_attempts_per_hour"] == {"from": 5, "to": 2}


def test_a_stricter_circuit_breaker_pauses_a_channel_sooner(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    _failed_attempts(loan, 2)
    # Two recent attempts that could not reach Alipay: below the default of five.
    PaymentAttempt.objects.filter(loan=loan).update(
        channel="alipay",
        failure_code=UNREACHABLE_FAILURE_CODE,
        updated_at=NOW - timedelta(seconds=30),
    )
    assert _options(loan)["alipay_balance"].available

    admin_client.post(URL, _form(circuit_min_attempts=2, circuit_cool_off_seconds=120))

    assert _options(loan)["alipay_balance"].reason == Reason.CHANNEL_UNHEALTHY
    assert _options(loan)["wechatpay_balance"].available


@pytest.mark.parametrize(
    "bad",
    [{"max_attempts_per_hour": 0}, {"circuit_failure_percent": 101}, {"circuit_min_attempts": -1}],
)
def test_out_of_range_values_are_refused_and_nothing_changes(
    admin_client: Client, bad: dict[str, int]
) -> None:
    response = admin_client.post(URL, _form(**bad))
    assert response.status_code == 200  # the form again, with its error
    assert RiskRules.objects.get().max_attempts_per_hour == 5
    assert not AuditEntry.objects.filter(action="riskrules.changed").exists()


def test_there_is_no_second_row_and_no_delete(admin_client: Client) -> None:
    assert admin_client.get("/admin/repayments/riskrules/add/").status_code == 403
    assert admin_client.get(f"{URL.removesuffix('change/')}delete/").status_code == 403
