"""WeChat Pay and UnionPay adapters against the sandbox over HTTP, with injected faults."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from repayments.channels.base import CallbackRejected, InboundCallback
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import BoundCard, Channel, EventKind, PaymentMethodType
from repayments.services.payments import Outcome, attempt_record_outcome, payment_create
from repayments.services.routing import payment_fallback, payment_start
from tests.conftest import at
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)
BANK = PaymentMethodType.BANK_DEBIT_CARD
WECHAT = PaymentMethodType.WECHATPAY_BALANCE


def _payment(make_loan):
    return payment_create(loan=make_loan(), amount="8606.64", now=NOW)


def _apply(sandbox_channels, attempt, notify):
    result = sandbox_channels(attempt.channel).parse_callback(
        InboundCallback(notify.body, notify.headers), now=timezone.now()
    )
    outcome = Outcome(
        result.status,
        EventKind.CALLBACK,
        accepted_at=result.accepted_at,
        channel_trade_no=result.channel_trade_no,
        failure_code=result.failure_code,
    )
    return attempt_record_outcome(attempt_id=attempt.pk, outcome=outcome, now=NOW)


def test_withholding_is_accepted_then_confirmed_by_signed_notify(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    assert started.attempt.status == AttemptStatus.PENDING
    [notify] = running_sandbox.receiver.wait(1)
    attempt = _apply(sandbox_channels, started.attempt, notify)
    assert attempt.status == AttemptStatus.SUCCEEDED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert running_sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_declined_debit_notifies_failure_with_the_bank_code(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"decline_rate": 1.0})
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    [notify] = running_sandbox.receiver.wait(1)
    attempt = _apply(sandbox_channels, started.attempt, notify)
    assert attempt.status == AttemptStatus.FAILED
    assert attempt.failure_code == "64"


def test_time_out_after_charge_never_charges_twice(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control(
        "unionpay/faults",
        {"timeout_after_charge_rate": 1.0, "hang_ms": 1500, "drop_callbacks": 1.0},
    )
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    assert started.attempt.status == AttemptStatus.UNKNOWN
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING
    running_sandbox.control("unionpay/faults", {"timeout_after_charge_rate": 0.0})
    # The borrower asks for WeChat instead: the query finds the debit, nothing new opens.
    result = payment_fallback(
        payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=sandbox_channels
    )
    assert result.attempt.pk == started.attempt.pk
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert running_sandbox.sandbox.ledger.requests["unionpay.debits"] == 1
    assert running_sandbox.sandbox.ledger.orders("wechatpay") == []


def test_channel_down_fails_the_attempt_as_unreachable(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"down": True})
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    assert started.attempt.status == AttemptStatus.FAILED
    assert started.attempt.failure_code == "channel_unavailable"
    # Not charged, so WeChat Pay may be offered at once.
    second = payment_fallback(
        payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=sandbox_channels
    )
    assert second.attempt.channel == "wechatpay"


def test_wechat_qr_payment_with_encrypted_notify(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=sandbox_channels
    )
    assert started.next_action.kind == "qr_code"
    assert started.next_action.value.startswith("weixin://")
    running_sandbox.control(f"wechatpay/pay/{started.attempt.out_trade_no}")
    [notify] = running_sandbox.receiver.wait(1)
    attempt = _apply(sandbox_channels, started.attempt, notify)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert sandbox_channels("wechatpay").query(attempt.out_trade_no).amount == Decimal("8606.64")


def test_wechat_notify_replayed_after_five_minutes_is_rejected(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk, method_type=WECHAT, now=NOW, channels=sandbox_channels
    )
    running_sandbox.control(f"wechatpay/pay/{started.attempt.out_trade_no}")
    [notify] = running_sandbox.receiver.wait(1)
    with pytest.raises(CallbackRejected):
        sandbox_channels("wechatpay").parse_callback(
            InboundCallback(notify.body, notify.headers), now=timezone.now() + timedelta(minutes=6)
        )


def test_duplicated_callbacks_arrive_twice_and_apply_once(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"duplicate_callbacks": 1.0})
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    first, second = running_sandbox.receiver.wait(2)
    _apply(sandbox_channels, started.attempt, first)
    _apply(sandbox_channels, started.attempt, second)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert sum(a.amount for a in payment.allocations.all()) == Decimal("8606.64")  # booked once
    assert payment.events.filter(kind=EventKind.IGNORED).count() == 1


def test_settlement_file_reports_injected_mismatch(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    payment = _payment(make_loan)
    started = payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    running_sandbox.control(
        "unionpay/faults", {"settlement_mismatches": [started.attempt.out_trade_no]}
    )
    running_sandbox.receiver.wait(1)
    [record] = sandbox_channels("unionpay").fetch_settlement_file(timezone.localdate())
    assert record.out_trade_no == started.attempt.out_trade_no
    assert record.amount == Decimal("8606.65")  # one fen more than was charged


def test_bound_card_token_is_what_the_bank_receives(
    make_loan, running_sandbox, sandbox_channels
) -> None:
    loan = make_loan()
    card = BoundCard.objects.create(
        borrower=loan.borrower,
        channel=Channel.UNIONPAY,
        card_token="tok_abc",
        card_masked="6222 **** **** 1234",
        bank_name="ICBC",
    )
    payment = payment_create(loan=loan, amount="100.00", now=NOW)
    payment_start(
        payment_id=payment.pk,
        method_type=BANK,
        now=NOW,
        card_token=card.card_token,
        channels=sandbox_channels,
    )
    [order] = running_sandbox.sandbox.ledger.orders("unionpay")
    assert order.card_token == "{token=tok_abc}"
