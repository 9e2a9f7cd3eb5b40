"""Paying through the API against the channel sandbox over real HTTP: the
Idempotency-Key contract (rule 3), and payments followed to their confirmed result."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from repayments.models import ChannelSetting, Payment, PaymentAttempt
from tests.api.conftest import Borrower, PortalChannels, problem_of

pytestmark = pytest.mark.django_db


def pay(borrower: Borrower, key: str | None = "key-0001", **body: Any) -> Any:
    data = {"loan": borrower.loan.pk, "amount": "2000.00", "method": "bank_debit_card", **body}
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return borrower.client.post("/api/v1/payments/", data, format="json", **headers)


def test_same_key_and_body_give_the_same_payment(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    first = pay(alice)
    again = pay(alice)
    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["out_trade_no"] == first.json()["out_trade_no"]
    assert Payment.objects.filter(loan=alice.loan).count() == 2  # the fixture's and this one
    assert PaymentAttempt.objects.filter(payment__public_id=first.json()["id"]).count() == 1
    assert portal_channels.sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_alipay_answers_with_a_checkout_redirect(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    created = pay(alice, method="alipay_balance").json()
    assert created["next_action"]["kind"] == "redirect"
    assert created["next_action"]["value"].startswith(portal_channels.sandbox.url)
    assert created["status"] == "processing"


def test_a_replay_returns_the_same_next_action(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    first = pay(alice, method="wechatpay_balance")
    again = pay(alice, method="wechatpay_balance")
    assert first.json()["next_action"]["kind"] == "qr_code"
    assert first.json()["next_action"]["value"].startswith("weixin://")
    assert again.json()["next_action"] == first.json()["next_action"]


@pytest.mark.parametrize(
    "change", [{"amount": "2000.01"}, {"method": "alipay_balance"}], ids=["amount", "method"]
)
def test_same_key_with_another_body_is_409(
    alice: Borrower, portal_channels: PortalChannels, change: dict[str, str]
) -> None:
    assert pay(alice).status_code == 201
    response = pay(alice, **change)
    assert response.status_code == 409
    assert problem_of(response)["code"] == "idempotency_key_reused"
    assert Payment.objects.filter(loan=alice.loan).count() == 2


def test_same_key_while_the_first_request_is_in_flight_is_409(alice: Borrower) -> None:
    # What the first request holds while it talks to the channel.
    cache.add(f"api:idempotency:{alice.user.pk}:key-0001", 1, 60)
    response = pay(alice)
    assert response.status_code == 409
    assert problem_of(response)["code"] == "request_in_flight"
    assert Payment.objects.filter(loan=alice.loan).count() == 1  # nothing new


def test_keys_belong_to_one_borrower(
    alice: Borrower, bob: Borrower, portal_channels: PortalChannels
) -> None:
    mine, theirs = pay(alice, key="shared-key"), pay(bob, key="shared-key")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", [None, "", "x" * 65, "has space", "ключ"])
def test_a_missing_or_malformed_key_is_a_field_error(alice: Borrower, key: str | None) -> None:
    response = pay(alice, key=key)
    assert response.status_code == 400
    [error] = problem_of(response)["errors"]
    assert error["field"] == "Idempotency-Key"
    assert Payment.objects.filter(loan=alice.loan).count() == 1


def test_an_unavailable_method_is_refused_with_its_reason(alice: Borrower) -> None:
    ChannelSetting.objects.filter(channel="unionpay").update(is_enabled=False)
    response = pay(alice)
    assert response.status_code == 409
    body = problem_of(response)
    assert body["code"] == "method_unavailable"
    assert body["reason_code"] == "channel_disabled"
    assert body["detail"] == "该支付方式暂不可用。"  # methods.explain, in zh-hans by default
    assert body["errors"] == [
        {"field": "method", "code": "method_unavailable", "message": body["detail"]}
    ]
    assert Payment.objects.filter(loan=alice.loan).count() == 1  # no payment left behind


def test_a_second_payment_while_one_is_processing_is_409(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control("wechatpay/faults", {"drop_callbacks": 1.0})
    assert pay(alice, method="wechatpay_balance").status_code == 201  # waits for the scan
    response = pay(alice, key="key-0002")
    assert response.status_code == 409
    body = problem_of(response)
    assert body["code"] == "method_unavailable"
    assert body["reason_code"] == "attempt_in_progress"


def test_withholding_through_the_sandbox_ends_succeeded_and_booked(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    created = pay(alice)
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "processing"
    assert body["channel"] == "unionpay"
    assert body["next_action"] == {"kind": "none", "value": ""}
    [callback] = portal_channels.relay(expected=1)
    assert callback.status_code == 200
    payment = alice.client.get(f"/api/v1/payments/{body['id']}/").json()
    assert payment["status"] == "succeeded"
    assert payment["channel_trade_no"]
    assert "callback" in [event["kind"] for event in payment["timeline"]]
    schedule = alice.client.get(f"/api/v1/loans/{alice.loan.pk}/schedule/").json()
    paid = sum(Decimal(row["paid"]) for row in schedule["installments"])
    assert paid == Decimal("2100.00")  # the fixture's 100.00 and these 2000.00


def test_reading_a_processing_payment_finds_a_lost_callback(
    alice: Borrower, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control("wechatpay/faults", {"drop_callbacks": 1.0})
    created = pay(alice, method="wechatpay_balance").json()
    portal_channels.sandbox.control(f"wechatpay/pay/{created['out_trade_no']}")  # scanned
    payment = alice.client.get(f"/api/v1/payments/{created['id']}/").json()
    assert payment["status"] == "succeeded"  # asked the channel at once: no callback came
    assert "poll" in [event["kind"] for event in payment["timeline"]]


def test_pay_a_settlement_quote(alice: Borrower, portal_channels: PortalChannels) -> None:
    quote = alice.client.post(
        f"/api/v1/loans/{alice.loan.pk}/settlement-quotes/", {}, format="json"
    ).json()
    response = alice.client.post(
        "/api/v1/payments/",
        {"loan": alice.loan.pk, "quote": quote["id"], "method": "bank_debit_card"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="settle-1",
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == quote["total"]
    assert response.json()["purpose"] == "early_settlement"
    assert response.json()["quote"] == quote["id"]
