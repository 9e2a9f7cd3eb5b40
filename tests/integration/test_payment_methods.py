"""Choosing how to pay: every method listed, every refusal explained (seeds 002, 003)."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import translation

from repayments.domain.availability import Reason
from repayments.domain.states import AttemptStatus
from repayments.models import BoundCard, Channel, ChannelSetting, PaymentAttempt
from repayments.services.methods import UNREACHABLE_FAILURE_CODE, payment_choice_for
from tests.conftest import at
from tests.integration.helpers import open_attempt, report

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)


def _choice(loan, amount="8606.64", now=NOW):
    with translation.override("en"):
        return payment_choice_for(loan=loan, amount=amount, now=now)


def _by_method(choice):
    return {o.option.method_type: o for o in choice.options}


def _bind_card(loan, *, credit=False, verified_until=date(2027, 1, 1)):
    BoundCard.objects.create(
        borrower=loan.borrower,
        channel=Channel.UNIONPAY,
        card_token=f"tok-{loan.pk}-{credit}",
        card_masked="6222 **** **** 1234",
        bank_name="ICBC",
        is_credit=credit,
        verified_until=verified_until,
    )


def test_every_method_is_listed_with_a_recommendation(make_loan) -> None:
    loan = make_loan()
    _bind_card(loan)
    choice = _choice(loan)
    assert len(choice.options) == 6
    assert choice.recommended == "bank_debit_card"  # highest-priority channel
    assert choice.advice == ""


def test_huabei_refused_with_contract_reason(make_loan) -> None:
    options = _by_method(_choice(make_loan()))
    huabei = options["alipay_huabei"]
    assert not huabei.option.available
    assert huabei.option.reason == Reason.NOT_ALLOWED_BY_PRODUCT
    assert "does not allow repaying with credit" in huabei.message


def test_huabei_offered_when_the_product_allows_it(make_loan) -> None:
    loan = make_loan(allowed_method_types=["alipay_balance", "alipay_huabei"])
    options = _by_method(_choice(loan))
    assert options["alipay_huabei"].option.available
    assert options["wechatpay_balance"].option.reason == Reason.NOT_ALLOWED_BY_PRODUCT


def test_maintenance_shows_expected_end_and_next_method_recommended(make_loan) -> None:
    loan = make_loan()
    ChannelSetting.objects.filter(channel="alipay").update(
        maintenance_starts_at=NOW - timedelta(hours=1), maintenance_ends_at=at(date(2026, 2, 5), 14)
    )
    ChannelSetting.objects.filter(channel="alipay").update(priority=0)
    choice = _choice(loan)
    alipay = _by_method(choice)["alipay_balance"]
    assert alipay.option.reason == Reason.CHANNEL_MAINTENANCE
    assert alipay.option.retry_after == at(date(2026, 2, 5), 14)
    assert "14:00" in alipay.message
    assert choice.recommended == "wechatpay_balance"  # no card bound, so not the bank


def test_amount_over_channel_limit_is_explained(make_loan) -> None:
    options = _by_method(_choice(make_loan(), amount="60000.00"))
    assert options["alipay_balance"].option.reason == Reason.OVER_LIMIT
    assert "¥50,000.00" in options["alipay_balance"].message


def test_bank_withholding_needs_a_verified_card(make_loan) -> None:
    loan = make_loan()
    assert _by_method(_choice(loan))["bank_debit_card"].option.reason == Reason.NO_BOUND_CARD
    _bind_card(loan, verified_until=date(2026, 1, 1))
    assert (
        _by_method(_choice(loan))["bank_debit_card"].option.reason == Reason.CARD_NEEDS_VERIFICATION
    )


def test_open_attempt_blocks_every_method_and_says_why(make_loan) -> None:
    loan = make_loan()
    _, attempt = open_attempt(loan, "100.00", NOW)
    report(attempt, AttemptStatus.UNKNOWN, NOW)
    choice = _choice(loan)
    assert all(o.option.reason == Reason.ATTEMPT_IN_PROGRESS for o in choice.options)
    assert choice.recommended is None
    assert "not charged twice" in choice.advice


def test_unreachable_channel_trips_the_circuit(make_loan) -> None:
    loan = make_loan()
    other = make_loan()
    for n in range(5):
        _, attempt = open_attempt(other, "1.00", NOW - timedelta(minutes=2))
        PaymentAttempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.FAILED,
            failure_code=UNREACHABLE_FAILURE_CODE,
            updated_at=NOW - timedelta(seconds=30 + n),
        )
    bank = _by_method(_choice(loan))["bank_debit_card"]
    assert bank.option.reason == Reason.CHANNEL_UNHEALTHY
    assert bank.option.retry_after == NOW + timedelta(seconds=30)  # a minute after the last
    later = _by_method(_choice(loan, now=NOW + timedelta(minutes=10)))["bank_debit_card"]
    assert later.option.reason == Reason.NO_BOUND_CARD  # window passed: circuit closed


def test_nothing_available_gives_bank_transfer_advice(make_loan) -> None:
    loan = make_loan()
    ChannelSetting.objects.update(is_enabled=False)
    choice = _choice(loan)
    assert choice.recommended is None
    assert all(not o.option.available for o in choice.options)
    assert "repayment account" in choice.advice


def test_too_many_attempts_in_an_hour(make_loan) -> None:
    loan = make_loan()
    for _ in range(5):
        _, attempt = open_attempt(loan, "100.00", NOW - timedelta(minutes=30))
        report(attempt, AttemptStatus.FAILED, NOW - timedelta(minutes=30))
    options = _by_method(_choice(loan))
    assert options["alipay_balance"].option.reason == Reason.TOO_MANY_ATTEMPTS


def test_messages_are_translated(make_loan) -> None:
    loan = make_loan()
    with translation.override("zh-hans"):
        choice = payment_choice_for(loan=loan, amount=Decimal("100.00"), now=NOW)
        huabei = next(o for o in choice.options if o.option.method_type == "alipay_huabei")
        assert "花呗" in huabei.message


def test_a_channel_without_settings_is_shown_switched_off_not_an_error(make_loan) -> None:
    loan = make_loan()
    _bind_card(loan)
    ChannelSetting.objects.filter(channel=Channel.WECHATPAY).delete()
    choice = _choice(loan)
    options = _by_method(choice)
    assert len(choice.options) == 6  # every method still listed
    wechat = options["wechatpay_balance"]
    assert not wechat.option.available
    assert wechat.option.reason == Reason.CHANNEL_DISABLED
    assert wechat.message
    assert options["alipay_balance"].option.available
    assert choice.recommended == "bank_debit_card"
