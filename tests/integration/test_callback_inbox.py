"""The callback inbox end to end: the sandbox signs and sends over HTTP, the portal's
``/callbacks/<channel>/`` endpoint stores, verifies, answers and applies (rules 1-3)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any
from unittest import mock

import pytest
import requests
from django.utils import timezone

from repayments.channels.alipay import protocol as alipay_protocol
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Allocation,
    CallbackStatus,
    EventKind,
    InboundCallbackRecord,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
)
from repayments.services.callbacks import callback_process, callbacks_due_for_sweep
from repayments.services.payments import payment_create
from repayments.services.routing import Started, payment_start
from repayments.tasks import sweep_callbacks
from tests.conftest import at
from tests.integration.conftest import PortalChannels

pytestmark = pytest.mark.django_db
NOW = at(date(2026, 2, 5), 10)
BANK = PaymentMethodType.BANK_DEBIT_CARD
WECHAT = PaymentMethodType.WECHATPAY_BALANCE
ALIPAY = PaymentMethodType.ALIPAY_BALANCE


def _start(make_loan, method: PaymentMethodType) -> Started:
    payment = payment_create(loan=make_loan(), amount="8606.64", now=timezone.now())
    return payment_start(
        payment_id=payment.pk, method_type=method, now=timezone.now(), card_token="tok_1"
    )


def _paid_alipay(make_loan, portal: PortalChannels) -> Started:
    started = _start(make_loan, ALIPAY)
    requests.get(started.next_action.value, timeout=5)  # the borrower opens the checkout
    portal.sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}")
    return started


def _state_changes(payment_id: int) -> int:
    return PaymentEvent.objects.filter(
        payment_id=payment_id, kind=EventKind.STATE_CHANGE, to_status=PaymentStatus.SUCCEEDED
    ).count()


def test_withholding_callback_is_stored_acknowledged_and_books_the_payment(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan, BANK)
    [response] = portal_channels.relay(expected=1)
    assert response.status_code == 200
    record = InboundCallbackRecord.objects.get()
    assert record.status == CallbackStatus.PROCESSED
    assert bytes(record.body) == portal_channels.sandbox.receiver.received[0].body
    assert record.attempt_id == started.attempt.pk
    payment = Payment.objects.get(pk=started.attempt.payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.allocated_at is not None


def test_alipay_notify_is_answered_with_the_literal_success(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _paid_alipay(make_loan, portal_channels)
    [response] = portal_channels.relay(expected=1)
    assert response.content == b"success"
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED


def test_wechat_notify_is_decrypted_and_applied(make_loan, portal_channels: PortalChannels) -> None:
    portal_channels.sandbox.control("wechatpay/faults", {"auto_pay": True})
    started = _start(make_loan, WECHAT)
    [response] = portal_channels.relay(expected=1)
    assert response.status_code in (200, 204)
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED


@pytest.mark.parametrize(("method", "expected_status"), [(ALIPAY, 400), (WECHAT, 401), (BANK, 400)])
def test_tampered_callback_is_refused_kept_and_changes_nothing(
    make_loan, portal_channels: PortalChannels, method, expected_status
) -> None:
    if method == WECHAT:
        portal_channels.sandbox.control("wechatpay/faults", {"auto_pay": True})
    started = (
        _paid_alipay(make_loan, portal_channels) if method == ALIPAY else _start(make_loan, method)
    )
    [item] = portal_channels.sandbox.receiver.wait(1)
    # One amount digit changed in transit (every format carries the amount in clear
    # text except WeChat's ciphertext, where any flipped byte fails authentication).
    target = b"ciphertext" if method == WECHAT else b"8606"
    position = item.body.index(target) + len(target) + (4 if method == WECHAT else -1)
    tampered = bytearray(item.body)
    tampered[position] = ord("1") if tampered[position] != ord("1") else ord("2")
    item.body = bytes(tampered)
    [response] = portal_channels.relay()
    assert response.status_code == expected_status
    if method == WECHAT:
        assert response.json()["code"] == "FAIL"
    record = InboundCallbackRecord.objects.get()
    assert record.status == CallbackStatus.REJECTED
    assert record.error
    started.attempt.refresh_from_db()
    assert started.attempt.status != AttemptStatus.SUCCEEDED
    assert not Allocation.objects.exists()
    metrics = portal_channels.client.get("/metrics").content.decode()
    assert f'anxin_callbacks_verification_failed_total{{channel="{started.attempt.channel}"}}' in (
        metrics
    )


def test_duplicate_callbacks_apply_once(make_loan, portal_channels: PortalChannels) -> None:
    portal_channels.sandbox.control("unionpay/faults", {"duplicate_callbacks": 1.0})
    started = _start(make_loan, BANK)
    responses = portal_channels.relay(expected=2)
    assert [r.status_code for r in responses] == [200, 200]
    assert InboundCallbackRecord.objects.filter(status=CallbackStatus.PROCESSED).count() == 2
    payment_id = started.attempt.payment_id
    assert _state_changes(payment_id) == 1
    allocated = sum(a.amount for a in Allocation.objects.filter(payment_id=payment_id))
    assert allocated == started.attempt.amount
    assert PaymentEvent.objects.filter(payment_id=payment_id, kind=EventKind.IGNORED).count() == 1


def test_processing_twice_is_harmless(make_loan, portal_channels: PortalChannels) -> None:
    started = _start(make_loan, BANK)
    portal_channels.relay(expected=1)
    record = InboundCallbackRecord.objects.get()
    events = PaymentEvent.objects.count()
    assert callback_process(record_id=record.pk, now=timezone.now()) == CallbackStatus.PROCESSED
    assert PaymentEvent.objects.count() == events
    assert _state_changes(started.attempt.payment_id) == 1


def test_a_lost_processing_message_is_finished_by_the_sweeper(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan, BANK)
    # The worker died or the broker lost the message: the row was stored and
    # acknowledged, but nothing processed it.
    with mock.patch("repayments.tasks.process_callback.delay") as lost:
        [response] = portal_channels.relay(expected=1)
    assert lost.called
    assert response.status_code == 200
    record = InboundCallbackRecord.objects.get()
    assert record.status == CallbackStatus.RECEIVED
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.PENDING
    assert callbacks_due_for_sweep(now=timezone.now()) == []  # too fresh to be called lost
    InboundCallbackRecord.objects.filter(pk=record.pk).update(
        received_at=timezone.now() - timedelta(minutes=5)
    )
    assert sweep_callbacks() == 1  # eager in tests: re-enqueued and processed
    record.refresh_from_db()
    assert record.status == CallbackStatus.PROCESSED
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED


def test_renamed_field_is_quarantined_alerted_and_replayed_after_the_fix(
    make_loan, portal_channels: PortalChannels, caplog, capsys
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    portal_channels.sandbox.control(
        "alipay/faults", {"rename_field": {"trade_status": "tradeStatus"}}
    )
    started = _paid_alipay(make_loan, portal_channels)
    other = _start(make_loan, BANK)  # everything else keeps flowing
    with caplog.at_level(logging.ERROR):
        responses = portal_channels.relay(expected=2)
    assert all(r.status_code == 200 for r in responses)
    record = InboundCallbackRecord.objects.get(channel="alipay")
    assert record.status == CallbackStatus.QUARANTINED
    assert "trade_status" in record.error
    assert any("quarantined" in message for message in caplog.messages)
    metrics = portal_channels.client.get("/metrics").content.decode()
    assert 'anxin_callbacks_quarantined{channel="alipay"} 1.0' in metrics
    started.attempt.refresh_from_db()
    other.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.PENDING
    assert other.attempt.status == AttemptStatus.SUCCEEDED

    with pytest.raises(CommandError):  # before the fix: still not understood
        call_command("replay_callbacks", "--quarantined")
    record.refresh_from_db()
    assert record.status == CallbackStatus.QUARANTINED

    original = alipay_protocol.parse_trade

    def fixed(fields, *, paid_at_key):
        fields = dict(fields)
        if "tradeStatus" in fields:
            fields["trade_status"] = fields.pop("tradeStatus")
        return original(fields, paid_at_key=paid_at_key)

    with mock.patch.object(alipay_protocol, "parse_trade", fixed):
        call_command("replay_callbacks", "--quarantined")
    assert "processed: 1" in capsys.readouterr().out
    record.refresh_from_db()
    assert record.status == CallbackStatus.PROCESSED
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED
    assert _state_changes(started.attempt.payment_id) == 1


def test_callback_for_an_order_we_never_made_changes_nothing(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan, BANK)
    PaymentAttempt.objects.filter(pk=started.attempt.pk).update(out_trade_no="AXSOMEONEELSE")
    [response] = portal_channels.relay(expected=1)
    assert response.status_code == 200  # stored: the channel may stop resending
    assert InboundCallbackRecord.objects.get().status == CallbackStatus.UNMATCHED
    assert not Allocation.objects.exists()


def test_unknown_channel_and_get_are_refused(client) -> None:
    assert (
        client.post("/callbacks/paypal/", data=b"x", content_type="text/plain").status_code == 404
    )
    assert client.get("/callbacks/alipay/").status_code == 405
    assert not InboundCallbackRecord.objects.exists()


def test_a_contradicting_callback_is_settled_by_asking_the_channel(
    make_loan, portal_channels: PortalChannels
) -> None:
    """We hold 'closed' (fallback); the channel's signed success says otherwise:
    query, trust the query, and book the late success once."""
    started = _paid_alipay(make_loan, portal_channels)
    PaymentAttempt.objects.filter(pk=started.attempt.pk).update(status=AttemptStatus.CLOSED)
    Payment.objects.filter(pk=started.attempt.payment_id).update(status=PaymentStatus.FAILED)
    portal_channels.relay(expected=1)
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.SUCCEEDED
    poll = PaymentEvent.objects.get(payment_id=started.attempt.payment_id, kind=EventKind.POLL)
    assert "query says succeeded" in poll.data["note"]
    payment = Payment.objects.get(pk=started.attempt.payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so no handler on the way catches it."""


def test_a_worker_killed_mid_processing_leaves_the_row_for_the_sweeper(
    make_loan, portal_channels: PortalChannels
) -> None:
    started = _start(make_loan, BANK)
    from repayments.services import payments as payments_module

    real_book = payments_module.payment_book

    def die_after_booking(**kwargs):
        real_book(**kwargs)  # the attempt and payment rows are already written...
        raise WorkerKilled  # ...and the process dies before the transaction commits

    with (
        mock.patch.object(payments_module, "payment_book", die_after_booking),
        pytest.raises(WorkerKilled),
    ):
        portal_channels.relay(expected=1)
    record = InboundCallbackRecord.objects.get()
    assert record.status == CallbackStatus.RECEIVED  # stored before the crash, kept after
    started.attempt.refresh_from_db()
    assert started.attempt.status == AttemptStatus.PENDING  # nothing half-written
    assert not Allocation.objects.exists()
    InboundCallbackRecord.objects.filter(pk=record.pk).update(
        received_at=timezone.now() - timedelta(minutes=5)
    )
    assert sweep_callbacks() == 1
    record.refresh_from_db()
    assert record.status == CallbackStatus.PROCESSED
    assert _state_changes(started.attempt.payment_id) == 1
    assert sum(a.amount for a in Allocation.objects.all()) == started.attempt.amount


class BrokenAdapter:
    """An adapter with a bug: it blows up on every callback."""

    def parse_callback(self, callback, *, now):
        raise RuntimeError("adapter bug")

    def callback_ack(self):
        from repayments.channels.base import CallbackAck

        return CallbackAck(status=200, body=b"success", content_type="text/plain")


def _broken(channel: str) -> Any:
    return BrokenAdapter()


def test_an_adapter_bug_quarantines_instead_of_losing_or_failing() -> None:
    from repayments.services.callbacks import callback_receive

    record, verdict = callback_receive(
        channel="alipay",
        body=b"a=1",
        headers={},
        remote_addr="127.0.0.1",
        now=timezone.now(),
        channels=_broken,
    )
    assert verdict.status == CallbackStatus.QUARANTINED
    assert verdict.ack.status == 200
    record.refresh_from_db()
    assert record.status == CallbackStatus.QUARANTINED
    assert "adapter bug" in record.error


def test_a_row_that_keeps_crashing_is_quarantined_after_its_tries() -> None:
    from repayments.services.callbacks import MAX_TRIES

    record = InboundCallbackRecord.objects.create(
        channel="alipay", body=b"a=1", headers={}, received_at=timezone.now()
    )
    for _ in range(MAX_TRIES):
        with pytest.raises(RuntimeError):
            callback_process(record_id=record.pk, now=timezone.now(), channels=_broken)
    record.refresh_from_db()
    assert record.status == CallbackStatus.RECEIVED
    assert record.tries == MAX_TRIES
    status = callback_process(record_id=record.pk, now=timezone.now(), channels=_broken)
    assert status == CallbackStatus.QUARANTINED
