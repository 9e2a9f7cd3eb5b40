"""Rule 5: the borrower's last word about a payment matches its confirmed state."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications.models import Delivery, DeliveryChannel, Notice, NoticeKind, NoticeStatus
from notifications.providers.base import ProviderError, Recipient, Sent
from notifications.services import notice_dispatch, notices_claim, notices_in_inbox
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import EventKind, Initiator, Payment, PaymentAttempt
from repayments.services.payments import Outcome, attempt_record_outcome, payment_create
from tests.conftest import at
from tests.integration.helpers import open_attempt, report, retry_with_alipay

pytestmark = pytest.mark.django_db
T0 = at(date(2026, 2, 5), 10)
SETTLE = timedelta(seconds=120)


@dataclass
class FakeSms:
    """Records what reached the phone, in order; can fail, or run something mid-send."""

    name: str = "fake-sms"
    channel: str = "sms"
    sent: list[tuple[int, str, str]] = field(default_factory=list)
    fail: bool = False
    during_send: list[Callable[[], object]] = field(default_factory=list)

    def send(self, *, to: Recipient, text: str, reference: str, **_: object) -> Sent:
        if self.during_send:
            self.during_send.pop(0)()
        if self.fail:
            raise ProviderError("gateway down")
        notice = Notice.objects.get(pk=int(reference))
        self.sent.append((notice.subject_id, notice.announced_state, text))
        return Sent(message_id=f"m{len(self.sent)}", delivered=True)


@dataclass
class FakePush(FakeSms):
    name: str = "fake-push"
    channel: str = "push"


def dispatch_all(now: datetime, sms: FakeSms, push: FakeSms | None = None) -> list[str]:
    def providers(channel: str) -> Any:
        return {"sms": sms, "push": push}.get(channel)

    statuses = []
    for notice_id in notices_claim(now=now):
        statuses.append(notice_dispatch(notice_id=notice_id, now=now, providers=providers).status)
    return statuses


def last_word(sms: FakeSms, payment_id: int) -> str | None:
    words = [state for subject, state, _ in sms.sent if subject == payment_id]
    return words[-1] if words else None


def test_a_failure_waits_for_the_settle_window_then_goes_out(make_loan) -> None:
    sms = FakeSms()
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.FAILED, T0)
    notice = Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.PAYMENT_FAILED)
    assert notice.not_before == T0 + SETTLE
    assert dispatch_all(T0 + timedelta(seconds=60), sms) == []
    assert dispatch_all(T0 + SETTLE, sms) == [NoticeStatus.DELIVERED]
    [(_, state, text)] = sms.sent
    assert state == PaymentStatus.FAILED
    assert "¥2,967.99" in text
    assert "未成功" in text


def test_a_failure_followed_by_success_within_the_window_is_never_sent(make_loan) -> None:
    sms = FakeSms()
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.FAILED, T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0 + timedelta(seconds=30))  # late success
    dispatch_all(T0 + timedelta(minutes=5), sms)
    assert [state for _, state, _ in sms.sent] == [PaymentStatus.SUCCEEDED]
    failed = Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.PAYMENT_FAILED)
    assert failed.status == NoticeStatus.SUPERSEDED
    assert "succeeded" in failed.status_reason
    succeeded = Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED)
    assert "第1期" in succeeded.body


def test_a_success_after_a_delivered_failure_sends_a_correction(make_loan) -> None:
    sms = FakeSms()
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.FAILED, T0)
    dispatch_all(T0 + SETTLE, sms)
    report(attempt, AttemptStatus.SUCCEEDED, T0 + timedelta(minutes=10))
    dispatch_all(T0 + timedelta(minutes=10), sms)
    assert [state for _, state, _ in sms.sent] == [PaymentStatus.FAILED, PaymentStatus.SUCCEEDED]
    correction = Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.CORRECTION)
    assert correction.corrects is not None
    assert correction.corrects.kind == NoticeKind.PAYMENT_FAILED
    assert correction.body.startswith("【安心还款】更正")
    assert "¥2,967.99" in correction.body
    assert "此前失败通知有误" in correction.body
    assert not Notice.objects.filter(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED)


def test_success_landing_while_the_failure_is_being_sent_is_corrected(make_loan) -> None:
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.FAILED, T0)
    when = T0 + SETTLE
    # The dispatcher checked "failed" and is talking to the SMS gateway when the
    # channel's success is booked: the failure still goes out...
    sms = FakeSms(during_send=[lambda: report(attempt, AttemptStatus.SUCCEEDED, when)])
    dispatch_all(when, sms)
    dispatch_all(when + timedelta(seconds=5), sms)
    states = [state for _, state, _ in sms.sent]
    # ...and is followed by the truth, whichever notice carries it.
    assert states[0] == PaymentStatus.FAILED
    assert states[-1] == PaymentStatus.SUCCEEDED
    assert Notice.objects.filter(subject_id=payment.pk, kind=NoticeKind.CORRECTION).exists()


def test_duplicate_triggers_and_retried_tasks_send_once(make_loan) -> None:
    sms = FakeSms()
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)  # duplicate callback
    [notice] = Notice.objects.filter(subject_id=payment.pk)
    ids = notices_claim(now=T0)
    assert ids == [notice.pk]
    assert notices_claim(now=T0) == []  # a second dispatcher finds nothing
    for _ in range(2):  # the task is delivered twice by the broker
        notice_dispatch(
            notice_id=notice.pk, now=T0, providers=lambda c: sms if c == "sms" else None
        )
    assert len(sms.sent) == 1


def test_sms_failure_falls_back_to_push_and_records_each_try(make_loan) -> None:
    sms, push = FakeSms(fail=True), FakePush()
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)
    # The borrower has a device; the fake push provider does not look at tokens.
    assert dispatch_all(T0, sms, push) == [NoticeStatus.DELIVERED]
    notice = Notice.objects.get(subject_id=payment.pk)
    tries = list(notice.deliveries.values_list("channel", "status"))
    assert tries == [("in_app", "delivered"), ("sms", "failed"), ("push", "delivered")]
    assert notices_in_inbox(user_id=payment.borrower_id) == [notice]


def test_when_every_channel_fails_the_notice_is_retried_then_marked_failed(make_loan) -> None:
    sms = FakeSms(fail=True)
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)
    when = T0
    for _ in range(4):
        dispatch_all(when, sms)
        when += timedelta(minutes=15)
    notice = Notice.objects.get(subject_id=payment.pk)
    assert notice.status == NoticeStatus.FAILED
    assert notice.tries == 4
    assert notice.deliveries.filter(channel=DeliveryChannel.SMS).count() == 4
    # The in-app inbox still has it: that channel cannot fail.
    assert notice.deliveries.filter(channel=DeliveryChannel.IN_APP).count() == 1


def test_a_dispatcher_that_died_mid_send_gives_its_claim_back(make_loan) -> None:
    sms = FakeSms()
    _payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)
    [notice_id] = notices_claim(now=T0)  # ...and the worker dies here
    assert notices_claim(now=T0 + timedelta(minutes=1)) == []
    assert dispatch_all(T0 + timedelta(minutes=3), sms) == [NoticeStatus.DELIVERED]
    assert Notice.objects.get(pk=notice_id).status == NoticeStatus.DELIVERED


def test_scheduled_withholding_tells_the_borrower_it_is_processing(make_loan) -> None:
    loan = make_loan()
    payment = payment_create(loan=loan, amount="2967.99", now=T0, initiated_by=Initiator.AUTO_DEBIT)
    from repayments.models import Channel, PaymentMethodType
    from repayments.services.payments import attempt_open

    attempt_open(
        payment_id=payment.pk,
        channel=Channel.UNIONPAY,
        method_type=PaymentMethodType.BANK_DEBIT_CARD,
        now=T0,
    )
    assert Notice.objects.filter(subject_id=payment.pk, kind=NoticeKind.PAYMENT_PROCESSING).exists()
    borrower_paid, _ = open_attempt(make_loan(), "10.00", T0)
    assert not Notice.objects.filter(subject_id=borrower_paid.pk).exists()


# --- Property: random interleavings of callbacks, queries and dispatcher runs ------

OPERATIONS = st.lists(
    st.one_of(
        st.just(("callback", AttemptStatus.SUCCEEDED)),
        st.just(("callback", AttemptStatus.FAILED)),
        st.just(("duplicate", None)),
        st.just(("fallback", None)),
        st.just(("late_success_on_earlier_attempt", None)),
        st.just(("dispatch", None)),
        st.just(("dispatch_racing_success", None)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=400)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_the_last_word_always_matches_the_final_state(make_loan, operations) -> None:
    sms = FakeSms()
    payment, first = open_attempt(make_loan(), "2967.99", T0)
    now = T0
    last_outcome: AttemptStatus | None = None

    def current_attempt() -> PaymentAttempt:
        return payment.attempts.order_by("-created_at", "-id").first()  # type: ignore[return-value]

    def apply(attempt: PaymentAttempt, status: AttemptStatus, when: datetime) -> None:
        # Every report the generator makes is legal for the state machine (it
        # ignores duplicates and regressions), so any exception fails the test.
        attempt_record_outcome(
            attempt_id=attempt.pk,
            outcome=Outcome(status, EventKind.CALLBACK, accepted_at=when),
            now=when,
        )

    for operation, value in operations:
        if operation == "callback":
            last_outcome = value
            apply(current_attempt(), value, now)
        elif operation == "duplicate" and last_outcome:
            apply(current_attempt(), last_outcome, now)
        elif operation == "fallback":
            payment.refresh_from_db()
            if payment.status == PaymentStatus.FAILED and not current_attempt().is_open:
                retry_with_alipay(payment, now)
        elif operation == "late_success_on_earlier_attempt":
            apply(first, AttemptStatus.SUCCEEDED, now)
        elif operation == "dispatch":
            dispatch_all(now, sms)
        elif operation == "dispatch_racing_success":
            target = current_attempt()
            sms.during_send.append(functools.partial(apply, target, AttemptStatus.SUCCEEDED, now))
            dispatch_all(now, sms)
            sms.during_send.clear()
        elif operation == "wait":
            now += timedelta(seconds=value)

    # Everything settles: the settle window passes and the dispatcher catches up.
    for _ in range(6):
        now += timedelta(minutes=15)
        dispatch_all(now, sms)
    payment.refresh_from_db()
    word = last_word(sms, payment.pk)
    if payment.status == PaymentStatus.SUCCEEDED:
        assert word == PaymentStatus.SUCCEEDED, sms.sent
    elif payment.status == PaymentStatus.FAILED:
        assert word == PaymentStatus.FAILED, sms.sent
    delivered = Delivery.objects.filter(
        notice__subject_id=payment.pk, notice__subject_type="payment", channel="sms"
    )
    assert delivered.count() == len([1 for s, _, _ in sms.sent if s == payment.pk])
    keys = list(
        Notice.objects.filter(subject_id=payment.pk, status=NoticeStatus.DELIVERED).values_list(
            "dedupe_key", flat=True
        )
    )
    assert len(keys) == len(set(keys)), keys
    assert Payment.objects.filter(pk=payment.pk).exists()
