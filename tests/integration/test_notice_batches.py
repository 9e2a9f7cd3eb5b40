"""Notices sent a batch at a time: each one still checked, fenced and recorded."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications import subjects
from notifications.models import Delivery, DeliveryChannel, Notice, NoticeKind, NoticeStatus
from notifications.providers.base import Recipient, Sent
from notifications.services import (
    dispatch,
    notice_enqueue,
    notices_claim,
    notices_claim_leased,
    notices_send,
)
from notifications.subjects import SubjectType
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import EventKind, Payment
from repayments.services.payments import Outcome, attempt_record_outcome
from repayments.services.reminders import reminders_enqueue
from tests.conftest import at
from tests.integration.helpers import open_attempt, pay, report

pytestmark = pytest.mark.django_db
T0 = at(date(2026, 2, 5), 10)
SETTLE = timedelta(seconds=120)


@dataclass
class Phone:
    """An SMS provider that records every message, in order, by notice id."""

    name: str = "phone"
    channel: str = "sms"
    sent: list[int] = field(default_factory=list)
    before_send: dict[int, Callable[[], object]] = field(default_factory=dict)
    explode_on: int | None = None

    def send(self, *, to: Recipient, text: str, reference: str, **_: object) -> Sent:
        notice_id = int(reference)
        if notice_id in self.before_send:
            self.before_send.pop(notice_id)()
        if notice_id == self.explode_on:
            raise RuntimeError("provider bug")
        self.sent.append(notice_id)
        return Sent(message_id=f"m-{reference}", delivered=True)

    def providers(self, channel: str) -> Any:
        return self if channel == "sms" else None


def send_batch(ids: list[int], now: datetime, phone: Phone, **kwargs: Any) -> dict[int, str]:
    results = notices_send(notice_ids=ids, clock=lambda: now, providers=phone.providers, **kwargs)
    return {pk: result.status for pk, result in results.items()}


def notice_of(payment: Payment, kind: NoticeKind) -> Notice:
    return Notice.objects.get(subject_type="payment", subject_id=payment.pk, kind=kind)


def test_a_mixed_batch_sends_exactly_the_notices_still_true(make_loan) -> None:
    phone = Phone()
    reminded = make_loan(start_date=date(2026, 1, 5))
    reminders_enqueue(today=date(2026, 2, 2), now=T0)  # installment 1 is due on 02-05
    installment = reminded.installments.get(number=1)
    pay(reminded, sum(installment.outstanding().values()), T0 + timedelta(seconds=10))
    paid, paid_attempt = open_attempt(make_loan(), "2967.99", T0)
    report(paid_attempt, AttemptStatus.SUCCEEDED, T0)
    report(paid_attempt, AttemptStatus.SUCCEEDED, T0)  # duplicate callback: no second notice
    recovered, recovered_attempt = open_attempt(make_loan(), "100.00", T0)
    report(recovered_attempt, AttemptStatus.FAILED, T0)
    report(recovered_attempt, AttemptStatus.SUCCEEDED, T0 + timedelta(seconds=30))
    failed, failed_attempt = open_attempt(make_loan(), "50.00", T0)
    report(failed_attempt, AttemptStatus.FAILED, T0)
    earlier = pay(make_loan(), "10.00", T0)
    now = T0 + SETTLE
    [delivered_before] = Notice.objects.filter(subject_id=earlier.pk, subject_type="payment")
    notices_claim(now=now)  # every notice is due now
    assert send_batch([delivered_before.pk], now, phone) == {delivered_before.pk: "delivered"}
    phone.sent.clear()

    ids = list(Notice.objects.order_by("pk").values_list("pk", flat=True))
    statuses = send_batch([*ids, ids[0], delivered_before.pk], now, phone)

    sendable = [
        notice_of(paid, NoticeKind.PAYMENT_SUCCEEDED).pk,
        notice_of(recovered, NoticeKind.PAYMENT_SUCCEEDED).pk,
        notice_of(failed, NoticeKind.PAYMENT_FAILED).pk,
        *Notice.objects.filter(
            subject_type="payment", subject_id=reminded_payment(reminded).pk
        ).values_list("pk", flat=True),
    ]
    assert sorted(phone.sent) == sorted(sendable)  # each once, none of the stale ones
    superseded = [
        notice_of(recovered, NoticeKind.PAYMENT_FAILED),
        Notice.objects.get(kind=NoticeKind.DUE_REMINDER, subject_id=installment.pk),
    ]
    for notice in superseded:
        notice.refresh_from_db()
        assert notice.status == NoticeStatus.SUPERSEDED
        assert statuses[notice.pk] == NoticeStatus.SUPERSEDED
    assert "succeeded" in superseded[0].status_reason
    assert "paid" in superseded[1].status_reason
    assert {statuses[pk] for pk in sendable} == {NoticeStatus.DELIVERED}
    assert statuses[delivered_before.pk] == NoticeStatus.DELIVERED
    in_app = Counter(
        Delivery.objects.filter(channel=DeliveryChannel.IN_APP).values_list("notice_id", flat=True)
    )
    assert set(in_app.values()) == {1}
    assert set(in_app) == {*sendable, delivered_before.pk}
    body = notice_of(failed, NoticeKind.PAYMENT_FAILED)
    assert "¥50.00" in body.body


def reminded_payment(loan: Any) -> Payment:
    return Payment.objects.get(loan=loan)


@dataclass
class Things:
    """A subject type held in memory, readable in bulk, with counted reads."""

    states: dict[int, str] = field(default_factory=dict)
    bulk_reads: int = 0

    def read_states(self, ids: Any) -> dict[int, str]:
        self.bulk_reads += 1
        return {pk: self.states[pk] for pk in ids if pk in self.states}

    def subject_type(self) -> SubjectType:
        return SubjectType(
            name="thing",
            read_state=lambda pk: pytest.fail("read one at a time"),
            read_states=self.read_states,
            confirmed_states=frozenset({"done"}),
            describe=lambda pk: {},
        )


def enqueue_things(things: Things, make_borrower: Any, count: int, now: datetime) -> list[int]:
    borrower = make_borrower()
    ids = []
    for n in range(count):
        serial = len(things.states)
        things.states[serial] = "open"
        notice = notice_enqueue(
            recipient_id=borrower.pk,
            kind=NoticeKind.DISPUTE_UPDATE,
            subject_type_name="thing",
            subject_id=serial,
            announced_state="open",
            episode=str(n),
            params={"case": serial, "status": "open"},
            now=now,
        )
        assert notice is not None
        ids.append(notice.pk)
    things.states[serial] = "closed"  # the last one is no longer true
    return ids


@pytest.mark.parametrize("other_size", [3, 30])
def test_a_batch_costs_the_same_queries_whatever_its_size(
    make_borrower, monkeypatch, other_size: int
) -> None:
    things = Things()
    monkeypatch.setitem(subjects._types, "thing", things.subject_type())
    counts = []
    for size in (12, other_size):
        phone = Phone()
        ids = enqueue_things(things, make_borrower, size, T0)
        claim = notices_claim_leased(now=T0, limit=100)
        assert sorted(claim.ids) == ids
        with CaptureQueriesContext(connection) as queries:
            statuses = send_batch(ids, T0, phone, lease_until=claim.lease_until)
        counts.append(len(queries))
        assert sorted(phone.sent) == ids[:-1]
        assert statuses[ids[-1]] == NoticeStatus.SUPERSEDED
        assert Counter(statuses.values())[NoticeStatus.DELIVERED] == size - 1
    assert counts[0] == counts[1], counts
    assert counts[0] <= 16, counts
    assert things.bulk_reads == 4  # before and after sending, per batch


def test_a_claim_taken_over_after_its_lease_is_left_to_the_new_owner(
    make_borrower, monkeypatch
) -> None:
    things = Things()
    monkeypatch.setitem(subjects._types, "thing", things.subject_type())
    ids = enqueue_things(things, make_borrower, 3, T0)[:2]
    stale = notices_claim_leased(now=T0)
    later = T0 + timedelta(minutes=3)  # the first claim's message sat in a queue too long
    fresh = notices_claim_leased(now=later)
    assert sorted(fresh.ids) == sorted(stale.ids)
    phone = Phone()

    assert send_batch(ids, later, phone, lease_until=stale.lease_until) == {
        ids[0]: NoticeStatus.SENDING,
        ids[1]: NoticeStatus.SENDING,
    }
    assert phone.sent == []
    send_batch(ids, later, phone, lease_until=fresh.lease_until)
    send_batch(ids, later, phone, lease_until=stale.lease_until)  # redelivered late
    assert phone.sent == ids


def test_what_a_batch_sent_is_recorded_even_when_a_provider_blows_up(
    make_borrower, monkeypatch
) -> None:
    things = Things()
    monkeypatch.setitem(subjects._types, "thing", things.subject_type())
    ids = enqueue_things(things, make_borrower, 5, T0)
    claim = notices_claim_leased(now=T0)
    phone = Phone(explode_on=ids[2])
    with pytest.raises(RuntimeError, match="provider bug"):
        send_batch(ids, T0, phone, lease_until=claim.lease_until)
    statuses = dict(Notice.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[pk] for pk in ids] == [
        "delivered",
        "delivered",
        "sending",
        "sending",
        "superseded",
    ]
    ids = ids[:4]
    # The claim on the rest runs out and they go out then; the first two never again.
    phone.explode_on = None
    later = T0 + timedelta(minutes=3)
    retry = notices_claim_leased(now=later)
    assert sorted(retry.ids) == ids[2:]
    send_batch(retry.ids, later, phone, lease_until=retry.lease_until)
    assert sorted(phone.sent) == ids
    assert Delivery.objects.filter(notice_id=ids[2], channel=DeliveryChannel.IN_APP).count() == 1


def test_a_long_batch_checks_states_again_before_sending_the_rest(make_loan, monkeypatch) -> None:
    monkeypatch.setattr(dispatch, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every send
    first, first_attempt = open_attempt(make_loan(), "10.00", T0)
    report(first_attempt, AttemptStatus.FAILED, T0)
    _second, second_attempt = open_attempt(make_loan(), "20.00", T0)
    report(second_attempt, AttemptStatus.FAILED, T0)
    now = T0 + SETTLE
    ids = sorted(notices_claim(now=now))
    phone = Phone()
    # While the first failure goes out, the second payment's success arrives.
    phone.before_send[ids[0]] = lambda: report(second_attempt, AttemptStatus.SUCCEEDED, now)
    statuses = send_batch(ids, now, phone)
    assert phone.sent == [ids[0]]
    assert statuses == {ids[0]: NoticeStatus.DELIVERED, ids[1]: NoticeStatus.SUPERSEDED}
    assert notice_of(first, NoticeKind.PAYMENT_FAILED).status == NoticeStatus.DELIVERED


def test_a_success_while_its_failure_is_in_a_batch_is_corrected(make_loan) -> None:
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.FAILED, T0)
    other = pay(make_loan(), "10.00", T0)
    now = T0 + SETTLE
    ids = sorted(notices_claim(now=now))
    failure = notice_of(payment, NoticeKind.PAYMENT_FAILED)
    phone = Phone(before_send={failure.pk: lambda: report(attempt, AttemptStatus.SUCCEEDED, now)})
    send_batch(ids, now, phone)
    correction = notice_of(payment, NoticeKind.CORRECTION)
    assert correction.corrects_id == failure.pk
    assert correction.status == NoticeStatus.PENDING
    send_batch(notices_claim(now=now), now, phone)
    other_notice = notice_of(other, NoticeKind.PAYMENT_SUCCEEDED)
    assert phone.sent[:2] == sorted([failure.pk, other_notice.pk])
    # The success booked mid-send has its own notice too; both carry the truth.
    success = notice_of(payment, NoticeKind.PAYMENT_SUCCEEDED)
    assert sorted(phone.sent[2:]) == sorted([correction.pk, success.pk])


def test_claims_stop_at_the_in_flight_cap_and_resume_as_notices_finish(
    make_borrower, monkeypatch
) -> None:
    things = Things()
    monkeypatch.setitem(subjects._types, "thing", things.subject_type())
    ids = enqueue_things(things, make_borrower, 6, T0)
    first = notices_claim_leased(now=T0, max_in_flight=4)
    assert len(first.ids) == 4
    assert notices_claim_leased(now=T0, max_in_flight=4).ids == []
    send_batch(first.ids, T0, Phone(), lease_until=first.lease_until)
    assert sorted(notices_claim_leased(now=T0, max_in_flight=4).ids) == sorted(
        set(ids) - set(first.ids)
    )


# --- Property: several payments, interleaved, dispatched in shared batches -------------

PAYMENTS = 3
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("callback"),
            st.integers(0, PAYMENTS - 1),
            st.sampled_from([AttemptStatus.SUCCEEDED, AttemptStatus.FAILED]),
        ),
        st.tuples(st.just("dispatch"), st.just(0), st.none()),
        st.tuples(st.just("dispatch_racing_success"), st.integers(0, PAYMENTS - 1), st.none()),
        st.tuples(st.just("wait"), st.integers(1, 400), st.none()),
    ),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_batches_never_leave_a_wrong_last_word(make_loan, operations) -> None:
    phone = Phone()
    opened = [open_attempt(make_loan(), "2967.99", T0) for _ in range(PAYMENTS)]
    now = T0

    def apply(index: int, status: AttemptStatus, when: datetime) -> None:
        attempt_record_outcome(
            attempt_id=opened[index][1].pk,
            outcome=Outcome(status, EventKind.CALLBACK, accepted_at=when),
            now=when,
        )

    def dispatch_batch(when: datetime) -> None:
        claim = notices_claim_leased(now=when)
        send_batch(claim.ids, when, phone, lease_until=claim.lease_until)

    for operation, value, status in operations:
        if operation == "callback":
            apply(value, status, now)
        elif operation == "dispatch":
            dispatch_batch(now)
        elif operation == "dispatch_racing_success":
            pending = Notice.objects.filter(
                subject_type="payment", subject_id=opened[value][0].pk
            ).values_list("pk", flat=True)
            racing = functools.partial(apply, value, AttemptStatus.SUCCEEDED, now)
            for pk in pending:
                phone.before_send[pk] = racing
            dispatch_batch(now)
            phone.before_send.clear()
        elif operation == "wait":
            now += timedelta(seconds=value)
    for _ in range(6):
        now += timedelta(minutes=15)
        dispatch_batch(now)

    announced = dict(Notice.objects.values_list("pk", "announced_state"))
    subject_of = dict(Notice.objects.values_list("pk", "subject_id"))
    assert len(phone.sent) == len(set(phone.sent)), phone.sent  # nothing sent twice
    for payment, _attempt in opened:
        payment.refresh_from_db()
        words = [announced[pk] for pk in phone.sent if subject_of[pk] == payment.pk]
        if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED):
            assert words[-1:] == [payment.status], (payment.status, words)
