"""janitor_check_many: several attempts asked one by one, their answers applied in one
transaction, with the same results janitor_check gives each of them alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from notifications.models import Notice, NoticeKind
from repayments.channels.base import ChannelUnavailable, TradeResult
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Allocation,
    AuditEntry,
    EventKind,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
)
from repayments.services.audit import audit_verify
from repayments.services.janitor import janitor_check_many
from repayments.services.payments import payment_create
from repayments.services.routing import payment_start
from tests.integration.fake_channel import FakeChannel, FakeChannels

pytestmark = pytest.mark.django_db


@dataclass
class OddChannel(FakeChannel):
    """A fake whose answers can go wrong for chosen orders."""

    wrong_amount: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        if out_trade_no in self.unreachable:
            raise ChannelUnavailable("SYSTEM_BUSY")
        result = super().query(out_trade_no, placed_at=placed_at)
        if out_trade_no in self.wrong_amount and result.amount is not None:
            return TradeResult(**{**result.__dict__, "amount": result.amount + Decimal("1.00")})
        return result


@pytest.fixture
def odd() -> OddChannel:
    return OddChannel("unionpay")


@pytest.fixture
def channels(odd: OddChannel) -> FakeChannels:
    fakes = FakeChannels()
    fakes.by_name["unionpay"] = odd
    return fakes


def _pending_attempts(make_loan, channels: FakeChannels, count: int) -> list[PaymentAttempt]:
    now = timezone.now()
    attempts = []
    for _ in range(count):
        payment = payment_create(loan=make_loan(), amount="8606.64", now=now)
        started = payment_start(
            payment_id=payment.pk,
            method_type=PaymentMethodType.BANK_DEBIT_CARD,
            now=now,
            card_token="tok_1",
            channels=channels,
        )
        assert started.attempt.status == AttemptStatus.PENDING
        attempts.append(started.attempt)
    return attempts


def test_paid_attempts_are_booked_together_and_the_rest_asked_again_later(
    make_loan, channels: FakeChannels
) -> None:
    paid, also_paid, waiting = _pending_attempts(make_loan, channels, 3)
    channels("unionpay").pay(paid.out_trade_no)
    channels("unionpay").pay(also_paid.out_trade_no)
    later = waiting.created_at + timedelta(seconds=16)

    statuses = janitor_check_many(
        attempt_ids=[waiting.pk, paid.pk, also_paid.pk], now=later, channels=channels
    )

    assert statuses == {
        paid.pk: AttemptStatus.SUCCEEDED,
        also_paid.pk: AttemptStatus.SUCCEEDED,
        waiting.pk: AttemptStatus.PENDING,
    }
    for attempt in (paid, also_paid):
        payment = Payment.objects.get(pk=attempt.payment_id)
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.allocated_at is not None  # booked in the same transaction
        assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == payment.amount
        assert PaymentAttempt.objects.get(pk=attempt.pk).next_query_at is None
        assert PaymentEvent.objects.filter(
            payment=payment, kind=EventKind.POLL, to_status=AttemptStatus.SUCCEEDED
        ).exists()
        notices = Notice.objects.filter(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED)
        assert notices.count() == 1
    still = PaymentAttempt.objects.get(pk=waiting.pk)
    assert still.query_count == 1
    assert still.next_query_at == still.created_at + timedelta(seconds=30)
    assert Payment.objects.get(pk=waiting.payment_id).status == PaymentStatus.PROCESSING
    succeeded = AuditEntry.objects.filter(action="payment.succeeded").values_list(
        "object_id", flat=True
    )
    paid_ids = Payment.objects.filter(pk__in=[paid.payment_id, also_paid.payment_id])
    assert sorted(succeeded) == sorted(str(p.public_id) for p in paid_ids)
    assert audit_verify() is None


def test_a_finished_attempt_is_not_asked_again(
    make_loan, channels: FakeChannels, odd: OddChannel
) -> None:
    [attempt] = _pending_attempts(make_loan, channels, 1)
    channels("unionpay").pay(attempt.out_trade_no)
    later = attempt.created_at + timedelta(seconds=16)
    janitor_check_many(attempt_ids=[attempt.pk], now=later, channels=channels)
    events = PaymentEvent.objects.filter(payment_id=attempt.payment_id).count()
    odd.unreachable.add(attempt.out_trade_no)  # would raise if asked
    assert janitor_check_many(attempt_ids=[attempt.pk], now=later, channels=channels) == {
        attempt.pk: AttemptStatus.SUCCEEDED
    }
    assert PaymentEvent.objects.filter(payment_id=attempt.payment_id).count() == events


def test_an_amount_mismatch_is_held_for_review_while_the_others_are_booked(
    make_loan, channels: FakeChannels, odd: OddChannel
) -> None:
    good, mismatched = _pending_attempts(make_loan, channels, 2)
    channels("unionpay").pay(good.out_trade_no)
    channels("unionpay").pay(mismatched.out_trade_no)
    odd.wrong_amount.add(mismatched.out_trade_no)
    later = mismatched.created_at + timedelta(seconds=16)

    statuses = janitor_check_many(
        attempt_ids=[good.pk, mismatched.pk], now=later, channels=channels
    )

    assert statuses[good.pk] == AttemptStatus.SUCCEEDED
    assert Payment.objects.get(pk=good.payment_id).status == PaymentStatus.SUCCEEDED
    held = PaymentAttempt.objects.get(pk=mismatched.pk)
    assert statuses[mismatched.pk] == held.status == AttemptStatus.PENDING  # never booked
    assert held.needs_review
    assert Payment.objects.get(pk=mismatched.payment_id).status == PaymentStatus.PROCESSING
    assert PaymentEvent.objects.filter(
        payment_id=mismatched.payment_id, kind=EventKind.NOTE, data__needs_review=True
    ).exists()


def test_an_unreachable_channel_leaves_that_attempt_open_for_later(
    make_loan, channels: FakeChannels, odd: OddChannel
) -> None:
    reachable, unreachable = _pending_attempts(make_loan, channels, 2)
    for attempt in (reachable, unreachable):
        channels("unionpay").pay(attempt.out_trade_no)
    odd.unreachable.add(unreachable.out_trade_no)
    later = reachable.created_at + timedelta(seconds=16)

    statuses = janitor_check_many(
        attempt_ids=[reachable.pk, unreachable.pk], now=later, channels=channels
    )

    assert statuses == {
        reachable.pk: AttemptStatus.SUCCEEDED,
        unreachable.pk: AttemptStatus.PENDING,
    }
    waiting = PaymentAttempt.objects.get(pk=unreachable.pk)
    assert waiting.query_count == 1
    assert waiting.next_query_at is not None
    assert waiting.next_query_at > later
