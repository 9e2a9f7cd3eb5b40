"""The pending-payment janitor against the sandbox over HTTP: lost callbacks, time-outs,
abandoned wallet orders and the manual-review queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from repayments.domain.query_schedule import NOTIFY_WINDOW, QUERY_OFFSETS, next_query_at
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import EventKind, Payment, PaymentAttempt, PaymentEvent, PaymentMethodType
from repayments.services.janitor import attempt_query_now, janitor_check, janitor_claim
from repayments.services.payments import payment_create
from repayments.services.routing import Started, payment_start
from tests.integration.conftest import PortalChannels

pytestmark = pytest.mark.django_db
BANK = PaymentMethodType.BANK_DEBIT_CARD
WECHAT = PaymentMethodType.WECHATPAY_BALANCE


def _start(make_loan, method: PaymentMethodType = BANK) -> Started:
    now = timezone.now()
    payment = payment_create(loan=make_loan(), amount="8606.64", now=now)
    return payment_start(payment_id=payment.pk, method_type=method, now=now, card_token="tok_1")


def test_schedule_is_dense_first_then_hourly_to_the_notify_window() -> None:
    created = timezone.now()
    assert next_query_at(created, created) == created + timedelta(seconds=15)
    assert next_query_at(created, created + timedelta(seconds=15)) == created + timedelta(
        seconds=30
    )
    assert next_query_at(created, created + timedelta(minutes=40)) == created + timedelta(hours=1)
    assert next_query_at(created, created + timedelta(hours=3, minutes=1)) == created + timedelta(
        hours=4
    )
    assert next_query_at(created, created + NOTIFY_WINDOW) is None
    assert timedelta(hours=25) == NOTIFY_WINDOW
    assert list(QUERY_OFFSETS) == sorted(QUERY_OFFSETS)


def test_a_lost_callback_is_found_by_the_janitor(
    make_loan, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control("unionpay/faults", {"drop_callbacks": 1.0})
    started = _start(make_loan)
    assert started.attempt.status == AttemptStatus.PENDING
    assert started.attempt.next_query_at == started.attempt.created_at + timedelta(seconds=15)
    assert janitor_claim(now=started.attempt.created_at + timedelta(seconds=5)) == []
    later = started.attempt.created_at + timedelta(seconds=16)
    assert janitor_claim(now=later) == [started.attempt.pk]
    assert janitor_check(attempt_id=started.attempt.pk, now=later) == AttemptStatus.SUCCEEDED
    payment = Payment.objects.get(pk=started.attempt.payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    attempt = PaymentAttempt.objects.get(pk=started.attempt.pk)
    assert attempt.next_query_at is None  # nothing left to ask
    assert janitor_claim(now=later + timedelta(hours=1)) == []


def test_a_claim_is_leased_so_two_workers_do_not_ask_twice(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan)
    later = started.attempt.created_at + timedelta(seconds=20)
    assert janitor_claim(now=later) == [started.attempt.pk]
    assert janitor_claim(now=later) == []  # the second worker finds it taken
    # ...but a worker that died with it frees it when the lease runs out.
    assert janitor_claim(now=later + timedelta(minutes=3)) == [started.attempt.pk]


def test_time_out_after_charge_stays_unknown_until_the_channel_answers(
    make_loan, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control(
        "unionpay/faults", {"timeout_after_charge_rate": 1.0, "hang_ms": 3000}
    )
    started = _start(make_loan)
    assert started.attempt.status == AttemptStatus.UNKNOWN
    portal_channels.sandbox.control("unionpay/faults", {"timeout_after_charge_rate": 0.0})
    portal_channels.sandbox.control("unionpay/faults", {"down": True})
    later = started.attempt.created_at + timedelta(seconds=16)
    assert janitor_check(attempt_id=started.attempt.pk, now=later) == AttemptStatus.UNKNOWN
    attempt = PaymentAttempt.objects.get(pk=started.attempt.pk)
    assert attempt.next_query_at == attempt.created_at + timedelta(seconds=30)
    assert Payment.objects.get(pk=attempt.payment_id).status == PaymentStatus.PROCESSING
    portal_channels.sandbox.control("unionpay/faults", {"down": False})
    assert (
        janitor_check(attempt_id=attempt.pk, now=later + timedelta(seconds=15))
        == AttemptStatus.SUCCEEDED
    )
    assert portal_channels.sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_an_abandoned_wallet_order_is_closed_after_it_expires(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan, WECHAT)
    early = started.attempt.created_at + timedelta(minutes=1)
    assert janitor_check(attempt_id=started.attempt.pk, now=early) == AttemptStatus.PENDING
    expired = started.attempt.created_at + timedelta(minutes=31)
    assert janitor_check(attempt_id=started.attempt.pk, now=expired) == AttemptStatus.CLOSED
    order = portal_channels.sandbox.sandbox.ledger.get("wechatpay", started.attempt.out_trade_no)
    assert order is not None
    assert order.status == "closed"  # closed at the channel: it can take no money now
    assert Payment.objects.get(pk=started.attempt.payment_id).status == PaymentStatus.FAILED


def test_an_order_paid_just_before_expiry_is_booked_not_closed(
    make_loan, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control("wechatpay/faults", {"drop_callbacks": 1.0})
    started = _start(make_loan, WECHAT)
    portal_channels.sandbox.control(f"wechatpay/pay/{started.attempt.out_trade_no}")
    expired = started.attempt.created_at + timedelta(minutes=31)
    assert janitor_check(attempt_id=started.attempt.pk, now=expired) == AttemptStatus.SUCCEEDED


def test_past_the_notify_window_an_attempt_goes_to_review_but_is_not_failed(
    make_loan, portal_channels: PortalChannels
) -> None:
    portal_channels.sandbox.control(
        "unionpay/faults", {"timeout_after_charge_rate": 1.0, "hang_ms": 3000}
    )
    started = _start(make_loan)
    portal_channels.sandbox.control("unionpay/faults", {"down": True})
    late = started.attempt.created_at + NOTIFY_WINDOW + timedelta(minutes=1)
    assert janitor_check(attempt_id=started.attempt.pk, now=late) == AttemptStatus.UNKNOWN
    attempt = PaymentAttempt.objects.get(pk=started.attempt.pk)
    assert attempt.needs_review
    assert attempt.status == AttemptStatus.UNKNOWN
    assert attempt.next_query_at is not None  # still asked now and then
    assert Payment.objects.get(pk=attempt.payment_id).status == PaymentStatus.PROCESSING
    assert PaymentEvent.objects.filter(
        payment_id=attempt.payment_id, kind=EventKind.NOTE, data__needs_review=True
    ).exists()


def test_an_immediate_query_is_rate_limited(make_loan, portal_channels: PortalChannels) -> None:
    cache.clear()
    portal_channels.sandbox.control("unionpay/faults", {"drop_callbacks": 1.0})
    started = _start(make_loan)
    before = portal_channels.sandbox.sandbox.ledger.requests.get("unionpay.requests", 0)
    now = timezone.now()
    assert attempt_query_now(attempt_id=started.attempt.pk, now=now) is True
    assert attempt_query_now(attempt_id=started.attempt.pk, now=now) is False
    after = portal_channels.sandbox.sandbox.ledger.requests.get("unionpay.requests", 0)
    assert after - before == 1
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED


def test_backlog_and_oldest_open_attempt_are_exposed_as_metrics(
    make_loan, portal_channels: PortalChannels, client
) -> None:
    portal_channels.sandbox.control("unionpay/faults", {"drop_callbacks": 1.0})
    started = _start(make_loan)
    PaymentAttempt.objects.filter(pk=started.attempt.pk).update(
        created_at=timezone.now() - timedelta(minutes=10),
        next_query_at=timezone.now() - timedelta(seconds=1),
    )
    metrics = client.get("/metrics").content.decode()
    assert 'anxin_janitor_backlog{channel="unionpay"} 1.0' in metrics
    oldest = [
        line
        for line in metrics.splitlines()
        if line.startswith('anxin_oldest_open_attempt_seconds{channel="unionpay",status="pending"}')
    ]
    assert oldest
    assert float(oldest[0].split()[-1]) >= 600
    # Opened 10 minutes ago: within the 15-minute "orders but no callbacks" window.
    assert 'anxin_orders_created_recently{channel="unionpay"} 1.0' in metrics
