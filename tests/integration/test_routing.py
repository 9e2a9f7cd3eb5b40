"""Fallback never double-charges (rule 4), driven through the routing services."""

from datetime import date
from decimal import Decimal

import pytest

from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import Allocation, EventKind, PaymentEvent, PaymentMethodType
from repayments.services.errors import AttemptAlreadyOpen
from repayments.services.payments import payment_create
from repayments.services.routing import (
    AmountMismatch,
    FallbackNotSafe,
    attempt_query,
    attempt_refund_duplicate,
    duplicates_refund,
    payment_fallback,
    payment_start,
)
from tests.conftest import at
from tests.integration.fake_channel import FakeChannels

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)
ALIPAY = PaymentMethodType.ALIPAY_BALANCE
WECHAT = PaymentMethodType.WECHATPAY_BALANCE
BANK = PaymentMethodType.BANK_DEBIT_CARD


@pytest.fixture
def channels() -> FakeChannels:
    return FakeChannels()


@pytest.fixture
def payment(make_loan):
    return payment_create(loan=make_loan(), amount="8606.64", now=NOW)


def test_wallet_order_waits_for_the_borrower(payment, channels) -> None:
    started = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    assert started.attempt.status == AttemptStatus.PENDING
    assert started.next_action.kind == "redirect"


def test_unreachable_channel_fails_the_attempt_so_another_can_start(payment, channels) -> None:
    channels("alipay").create_behaviour = "unavailable"
    first = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    assert first.attempt.status == AttemptStatus.FAILED
    assert first.attempt.failure_code == "channel_unavailable"
    second = payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    assert second.attempt.channel == "wechatpay"
    assert channels("alipay").charges == []


def test_time_out_after_charge_is_unknown_and_blocks_a_second_charge(payment, channels) -> None:
    channels("unionpay").create_behaviour = "timeout_charged"
    first = payment_start(
        payment_id=payment.pk, method_type=BANK, now=NOW, card_token="tok", channels=channels
    )
    assert first.attempt.status == AttemptStatus.UNKNOWN
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING  # shown as processing, never failed
    with pytest.raises(AttemptAlreadyOpen):
        payment_start(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    # A fallback first asks the channel: it charged, so the payment succeeds, once.
    result = payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    assert result.attempt.pk == first.attempt.pk
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert channels("wechatpay").charges == []
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("8606.64")


def test_fallback_closes_the_waiting_wallet_order_first(payment, channels) -> None:
    first = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    second = payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    first.attempt.refresh_from_db()
    assert first.attempt.status == AttemptStatus.CLOSED
    assert channels("alipay").orders[first.attempt.out_trade_no] == AttemptStatus.CLOSED
    assert second.attempt.out_trade_no != first.attempt.out_trade_no
    assert second.attempt.status == AttemptStatus.PENDING


def test_paid_just_before_close_is_booked_and_no_second_order_opens(payment, channels) -> None:
    first = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    channels("alipay").pay_on_close = True
    result = payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    assert result.attempt.pk == first.attempt.pk
    assert result.attempt.status == AttemptStatus.SUCCEEDED
    assert "wechatpay" not in channels.by_name or channels("wechatpay").amounts == {}


def test_unknown_outcome_the_channel_cannot_confirm_blocks_fallback(payment, channels) -> None:
    channels("unionpay").create_behaviour = "timeout_charged"
    first = payment_start(
        payment_id=payment.pk, method_type=BANK, now=NOW, card_token="t", channels=channels
    )
    channels("unionpay").orders[first.attempt.out_trade_no] = AttemptStatus.UNKNOWN
    with pytest.raises(FallbackNotSafe):
        payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)


def test_both_attempts_succeed_one_is_kept_and_the_later_refunded(payment, channels) -> None:
    first = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    channels("alipay").orders[first.attempt.out_trade_no] = AttemptStatus.PENDING
    payment_fallback(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    second = payment.attempts.order_by("-id").first()
    channels("wechatpay").pay(second.out_trade_no)
    attempt_query(attempt_id=second.pk, now=NOW, channels=channels)
    # The closed Alipay order reports a success after all (e.g. a late settlement).
    channels("alipay").orders[first.attempt.out_trade_no] = AttemptStatus.SUCCEEDED
    attempt_query(attempt_id=first.attempt.pk, now=NOW, channels=channels)
    note = PaymentEvent.objects.get(payment=payment, kind=EventKind.NOTE)
    assert note.data == {"refund_required": first.attempt.out_trade_no}
    # The sweep finds the flag and refunds it, once, however often it runs.
    assert duplicates_refund(now=NOW, channels=channels) == 1
    assert duplicates_refund(now=NOW, channels=channels) == 0
    assert channels("alipay").refunds == [first.attempt.out_trade_no]
    # The kept attempt is never refunded, even if asked directly.
    assert not attempt_refund_duplicate(attempt_id=second.pk, now=NOW, channels=channels)
    assert channels("wechatpay").refunds == []
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("8606.64")


def test_declined_debit_fails_with_the_bank_reason(payment, channels) -> None:
    channels("unionpay").create_behaviour = "declined"
    started = payment_start(
        payment_id=payment.pk, method_type=BANK, now=NOW, card_token="t", channels=channels
    )
    assert started.attempt.status == AttemptStatus.FAILED
    assert started.attempt.failure_code == "INSUFFICIENT_FUNDS"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


def test_order_the_channel_never_received_is_closed_and_replaced(payment, channels) -> None:
    first = payment_start(payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=channels)
    channels("wechatpay").close_not_exist = True
    second = payment_fallback(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    first.attempt.refresh_from_db()
    assert first.attempt.status == AttemptStatus.CLOSED
    assert second.attempt.channel == "alipay"


def test_success_for_another_amount_is_not_booked(payment, channels) -> None:
    started = payment_start(payment_id=payment.pk, method_type=ALIPAY, now=NOW, channels=channels)
    channels("alipay").pay(started.attempt.out_trade_no)
    channels("alipay").reported_amount = Decimal("1.00")
    with pytest.raises(AmountMismatch):
        attempt_query(attempt_id=started.attempt.pk, now=NOW, channels=channels)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING
    assert not Allocation.objects.filter(payment=payment).exists()
