"""Draining the callback inbox in batches (issue 4): several stored rows per
transaction, each payment still locked and applied once, and one bad row neither
lost nor blocking the others (rules 1-3, 5)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from notifications.models import Notice, NoticeKind
from repayments.channels.base import CallbackAck, InboundCallback, TradeResult
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Allocation,
    CallbackStatus,
    Channel,
    DisputeCategory,
    DisputeStatus,
    EventKind,
    InboundCallbackRecord,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
)
from repayments.services import payments as payments_module
from repayments.services.callbacks import callback_process, callbacks_process_batch
from repayments.services.disputes import dispute_open
from repayments.services.payments import (
    Outcome,
    attempt_open,
    attempt_record_outcome,
    payment_create,
)

pytestmark = pytest.mark.django_db
AMOUNT = Decimal("500.00")


class JsonAdapter:
    """A channel whose callbacks are plain JSON: what the batch does, not how a real
    channel signs, is under test here (the real adapters have their own tests)."""

    def parse_callback(self, callback: InboundCallback, *, now: Any) -> TradeResult:
        data = json.loads(callback.body)
        return TradeResult(
            out_trade_no=data["order"],
            status=AttemptStatus(data["status"]),
            channel_trade_no=f"T{data['order']}",
            amount=Decimal(data.get("amount", str(AMOUNT))),
            accepted_at=timezone.now(),
        )

    def query(self, out_trade_no: str, *, placed_at: Any) -> TradeResult:
        """Asked about a contradiction: every order here was paid."""
        return TradeResult(
            out_trade_no=out_trade_no,
            status=AttemptStatus.SUCCEEDED,
            channel_trade_no=f"T{out_trade_no}",
            amount=AMOUNT,
            accepted_at=timezone.now(),
        )

    def callback_ack(self) -> CallbackAck:
        return CallbackAck(status=200, body=b"success", content_type="text/plain")


def _json(channel: str) -> Any:
    return JsonAdapter()


def _pending_attempt(make_loan) -> PaymentAttempt:
    now = timezone.now()
    payment = payment_create(loan=make_loan(), amount=AMOUNT, now=now)
    attempt = attempt_open(
        payment_id=payment.pk,
        channel=Channel.ALIPAY,
        method_type=PaymentMethodType.ALIPAY_BALANCE,
        now=now,
    )
    return attempt_record_outcome(
        attempt_id=attempt.pk, outcome=Outcome(AttemptStatus.PENDING, EventKind.REQUEST), now=now
    )


def _stored(order: str, status: str = "succeeded", **extra: str) -> InboundCallbackRecord:
    body = json.dumps({"order": order, "status": status, **extra}).encode()
    return InboundCallbackRecord.objects.create(
        channel=Channel.ALIPAY, body=body, headers={}, received_at=timezone.now()
    )


def _succeeded_once(attempt: PaymentAttempt) -> None:
    payment = Payment.objects.get(pk=attempt.payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.allocated_at is not None
    booked = sum(a.amount for a in Allocation.objects.filter(payment=payment))
    assert booked == payment.amount
    changes = PaymentEvent.objects.filter(
        payment=payment, kind=EventKind.STATE_CHANGE, to_status=PaymentStatus.SUCCEEDED
    )
    assert changes.count() == 1
    assert (
        Notice.objects.filter(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED).count() == 1
    )


def test_one_batch_applies_every_row_and_duplicates_once(make_loan) -> None:
    attempts = [_pending_attempt(make_loan) for _ in range(4)]
    rows = [_stored(a.out_trade_no) for a in attempts]
    rows.append(_stored(attempts[0].out_trade_no))  # the channel sent one twice
    rows.append(_stored("AXNEVERPLACED"))

    outcomes = callbacks_process_batch(now=timezone.now(), limit=50, channels=_json)

    assert outcomes == {CallbackStatus.PROCESSED: 5, CallbackStatus.UNMATCHED: 1}
    for attempt in attempts:
        _succeeded_once(attempt)
    for row in rows:
        row.refresh_from_db()
        assert row.tries == 1
    assert {r.status for r in rows} == {CallbackStatus.PROCESSED, CallbackStatus.UNMATCHED}
    assert rows[0].attempt_id == attempts[0].pk
    assert rows[0].reported_status == "succeeded"
    ignored = PaymentEvent.objects.filter(payment_id=attempts[0].payment_id, kind=EventKind.IGNORED)
    assert ignored.count() == 1  # the duplicate is recorded and changes nothing
    assert callbacks_process_batch(now=timezone.now(), channels=_json) == {}  # nothing left
    # The one-row path is the same code: a row already done stays done.
    assert callback_process(record_id=rows[0].pk, now=timezone.now(), channels=_json) == (
        CallbackStatus.PROCESSED
    )


def test_a_batch_takes_at_most_its_limit_oldest_first(make_loan) -> None:
    attempts = [_pending_attempt(make_loan) for _ in range(3)]
    rows = [_stored(a.out_trade_no) for a in attempts]

    assert callbacks_process_batch(now=timezone.now(), limit=2, channels=_json) == {
        CallbackStatus.PROCESSED: 2
    }
    statuses = [InboundCallbackRecord.objects.get(pk=r.pk).status for r in rows]
    assert statuses == [CallbackStatus.PROCESSED, CallbackStatus.PROCESSED, "received"]


def test_a_row_that_breaks_the_batch_neither_blocks_nor_loses_the_others(
    make_loan, monkeypatch
) -> None:
    attempts = [_pending_attempt(make_loan) for _ in range(3)]
    rows = [_stored(a.out_trade_no) for a in attempts]
    poisoned = attempts[1].payment_id
    real_book = payments_module.payment_book

    def book_or_crash(**kwargs: Any) -> Any:
        if kwargs["payment"].pk == poisoned:
            raise RuntimeError("bug while booking this one payment")
        return real_book(**kwargs)

    monkeypatch.setattr(payments_module, "payment_book", book_or_crash)

    outcomes = callbacks_process_batch(now=timezone.now(), channels=_json)

    assert outcomes == {CallbackStatus.PROCESSED: 2, CallbackStatus.RECEIVED: 1}
    _succeeded_once(attempts[0])
    _succeeded_once(attempts[2])
    bad = InboundCallbackRecord.objects.get(pk=rows[1].pk)
    assert bad.status == CallbackStatus.RECEIVED  # kept for the sweeper, not lost
    assert bad.tries == 1  # the rolled-back batch try is not counted, the retry is
    assert Payment.objects.get(pk=poisoned).status == PaymentStatus.PROCESSING
    assert not Allocation.objects.filter(payment_id=poisoned).exists()

    monkeypatch.setattr(payments_module, "payment_book", real_book)  # the fix ships
    assert callbacks_process_batch(now=timezone.now(), channels=_json) == {
        CallbackStatus.PROCESSED: 1
    }
    _succeeded_once(attempts[1])


def test_amount_mismatch_in_a_batch_is_held_and_the_rest_go_on(make_loan) -> None:
    good, odd = _pending_attempt(make_loan), _pending_attempt(make_loan)
    _stored(good.out_trade_no)
    held = _stored(odd.out_trade_no, amount="1.00")

    outcomes = callbacks_process_batch(now=timezone.now(), channels=_json)

    assert outcomes == {CallbackStatus.PROCESSED: 1, CallbackStatus.HELD: 1}
    _succeeded_once(good)
    held.refresh_from_db()
    assert held.status == CallbackStatus.HELD
    assert PaymentAttempt.objects.get(pk=odd.pk).status == AttemptStatus.PENDING


def test_two_payments_of_one_loan_in_one_batch_book_against_current_balances(
    make_loan,
) -> None:
    loan = make_loan()
    now = timezone.now()
    first = payment_create(loan=loan, amount=AMOUNT, now=now)
    orders = []
    for payment in (first, payment_create(loan=loan, amount=AMOUNT, now=now)):
        attempt = attempt_open(
            payment_id=payment.pk,
            channel=Channel.ALIPAY,
            method_type=PaymentMethodType.ALIPAY_BALANCE,
            now=now,
        )
        # One open attempt per loan: the first is paid before the second opens.
        attempt_record_outcome(
            attempt_id=attempt.pk,
            outcome=Outcome(AttemptStatus.FAILED, EventKind.REQUEST, failure_code="x")
            if payment is first
            else Outcome(AttemptStatus.PENDING, EventKind.REQUEST),
            now=now,
        )
        orders.append(attempt)
    # The first attempt failed; its late success and the second success arrive together.
    _stored(orders[1].out_trade_no)
    late = _stored(orders[0].out_trade_no)

    outcomes = callbacks_process_batch(now=timezone.now(), channels=_json)

    # The late success contradicts the failure we hold: settled after the batch by
    # asking the channel, which confirms it: both payments are booked, once each.
    assert outcomes == {CallbackStatus.PROCESSED: 2}
    late.refresh_from_db()
    assert "query says succeeded" in late.error
    for attempt in orders:
        _succeeded_once(attempt)
    booked = Allocation.objects.filter(payment__loan=loan)
    assert sum(a.amount for a in booked) == 2 * AMOUNT
    for installment in loan.installments.all():
        assert installment.principal_paid <= installment.principal_due
        assert installment.interest_paid <= installment.interest_due


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_draining_at_once_apply_each_callback_once(make_loan) -> None:
    from tests.integration.test_concurrency_postgres import race

    attempts = [_pending_attempt(make_loan) for _ in range(12)]
    for attempt in attempts:  # every notification twice, as channels resend
        _stored(attempt.out_trade_no)
        _stored(attempt.out_trade_no)
    # Three workers, each draining in small batches until it can claim nothing.

    def drain(_: int) -> int:
        done = 0
        while outcomes := callbacks_process_batch(now=timezone.now(), limit=5, channels=_json):
            done += sum(outcomes.values())
        return done

    results = race(3, drain)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 24  # every row claimed by exactly one worker
    assert not InboundCallbackRecord.objects.exclude(status=CallbackStatus.PROCESSED).exists()
    for attempt in attempts:
        _succeeded_once(attempt)


def test_a_case_naming_the_channels_number_is_linked_by_a_batch(make_loan) -> None:
    """The batch holds back the attempt's new channel number until its end; the case
    search reads attempts from the database, so the held rows must be written first."""
    attempt = _pending_attempt(make_loan)
    other = _pending_attempt(make_loan)
    payment = Payment.objects.select_related("loan").get(pk=attempt.payment_id)
    case = dispute_open(
        borrower=payment.borrower,
        loan=payment.loan,
        now=timezone.now(),
        category=DisputeCategory.PAID_NOT_SHOWN,
        description="paid, not shown",
        trade_no=f"T{attempt.out_trade_no}",  # the channel's number, unknown to us yet
    )
    assert case.payment is None
    _stored(other.out_trade_no)
    _stored(attempt.out_trade_no)

    callbacks_process_batch(now=timezone.now(), channels=_json)

    case.refresh_from_db()
    assert case.payment_id == payment.pk
    assert case.status == DisputeStatus.RESOLVED
    _succeeded_once(attempt)
    _succeeded_once(other)
