"""The Alipay adapter against the sandbox over real HTTP: pay, notify, query, faults."""

from datetime import date
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from repayments.channels.alipay import AlipayChannel, AlipayConfig
from repayments.channels.base import (
    CallbackUnparseable,
    ChannelUnavailable,
    InboundCallback,
)
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import EventKind, PaymentMethodType
from repayments.services.payments import Outcome, attempt_record_outcome, payment_create
from repayments.services.routing import attempt_query, payment_fallback, payment_start
from tests.conftest import at
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)
ALIPAY = PaymentMethodType.ALIPAY_BALANCE


@pytest.fixture
def alipay(running_sandbox: RunningSandbox, channel_keys, settings) -> AlipayChannel:
    settings.PORTAL_BASE_URL = running_sandbox.receiver.url.removesuffix("/callbacks/")
    return AlipayChannel(
        AlipayConfig(
            app_id=settings.ALIPAY_APP_ID,
            seller_id=settings.ALIPAY_SELLER_ID,
            gateway_url=f"{running_sandbox.url}/alipay/gateway.do",
            app_private_key_path=str(channel_keys / "alipay" / "merchant_private.pem"),
            alipay_public_key_path=str(channel_keys / "alipay" / "platform_public.pem"),
            timeout=2.0,
        )
    )


def _start(make_loan, alipay):
    payment = payment_create(loan=make_loan(), amount="8606.64", now=NOW)
    started = payment_start(
        payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=lambda _: alipay
    )
    return payment, started


def test_borrower_pays_on_checkout_and_the_signed_notify_books_the_payment(
    make_loan, alipay, running_sandbox
) -> None:
    payment, started = _start(make_loan, alipay)
    assert started.next_action.kind == "redirect"
    page = requests.get(started.next_action.value, timeout=5)
    assert "8606.64" in page.text
    running_sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}")
    [notify] = running_sandbox.receiver.wait(1)
    result = alipay.parse_callback(InboundCallback(notify.body, notify.headers), now=timezone.now())
    assert result.status == AttemptStatus.SUCCEEDED
    assert result.amount == Decimal("8606.64")
    outcome = Outcome(
        result.status,
        EventKind.CALLBACK,
        accepted_at=result.accepted_at,
        channel_trade_no=result.channel_trade_no,
    )
    attempt_record_outcome(attempt_id=started.attempt.pk, outcome=outcome, now=NOW)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (
        running_sandbox.sandbox.notifier.acknowledged == 1
    )  # the literal "success" stopped resends


def test_query_before_the_page_is_opened_is_still_pending(make_loan, alipay) -> None:
    _, started = _start(make_loan, alipay)
    assert alipay.query(started.attempt.out_trade_no).status == AttemptStatus.PENDING


def test_huabei_funding_is_reported(make_loan, alipay, running_sandbox) -> None:
    _, started = _start(make_loan, alipay)
    requests.get(started.next_action.value, timeout=5)
    running_sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}?funding=PCREDIT")
    [notify] = running_sandbox.receiver.wait(1)
    result = alipay.parse_callback(InboundCallback(notify.body, notify.headers), now=timezone.now())
    assert result.funding == "PCREDIT"
    assert alipay.query(started.attempt.out_trade_no).funding == "PCREDIT"


def test_renamed_field_in_notify_is_unparseable_not_lost(
    make_loan, alipay, running_sandbox
) -> None:
    running_sandbox.control("alipay/faults", {"rename_field": {"out_trade_no": "outTradeNo"}})
    _, started = _start(make_loan, alipay)
    requests.get(started.next_action.value, timeout=5)
    running_sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}")
    [notify] = running_sandbox.receiver.wait(1)
    with pytest.raises(CallbackUnparseable):
        alipay.parse_callback(InboundCallback(notify.body, notify.headers), now=timezone.now())


def test_channel_down_makes_queries_unavailable(make_loan, alipay, running_sandbox) -> None:
    _, started = _start(make_loan, alipay)
    running_sandbox.control("alipay/faults", {"down": True})
    with pytest.raises(ChannelUnavailable):
        alipay.query(started.attempt.out_trade_no)


def test_fallback_closes_the_opened_alipay_trade_first(make_loan, alipay, running_sandbox) -> None:
    payment, started = _start(make_loan, alipay)
    requests.get(started.next_action.value, timeout=5)  # trade exists, waiting for payment
    from tests.integration.fake_channel import FakeChannels

    fakes = FakeChannels()
    channels = lambda name: alipay if name == "alipay" else fakes(name)  # noqa: E731
    second = payment_fallback(
        payment_id=payment.pk,
        method_type=PaymentMethodType.WECHATPAY_BALANCE,
        now=NOW,
        channels=channels,
    )
    assert second.attempt.channel == "wechatpay"
    order = running_sandbox.sandbox.ledger.get("alipay", started.attempt.out_trade_no)
    assert order is not None
    assert order.status == "closed"
    # The closed trade can no longer be paid on the checkout page.
    running_sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}")
    assert (
        attempt_query(attempt_id=started.attempt.pk, now=NOW, channels=channels).status
        == AttemptStatus.CLOSED
    )
