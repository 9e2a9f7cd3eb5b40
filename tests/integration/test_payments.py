"""The payment state machine through the services (design rules 2, 3, 4)."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from repayments.domain.states import AttemptStatus, IllegalTransition, PaymentStatus
from repayments.models import (
    Allocation,
    Channel,
    EventKind,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
)
from repayments.services.errors import (
    AttemptAlreadyOpen,
    IdempotencyKeyReused,
    MethodNotAllowed,
    PaymentNotPayable,
)
from repayments.services.payments import attempt_open, payment_cancel, payment_create
from tests.conftest import at
from tests.integration.helpers import open_attempt, pay, report, retry_with_alipay

pytestmark = pytest.mark.django_db
FIRST_DUE = date(2026, 2, 5)


def test_success_books_the_payment_once(make_loan) -> None:
    loan = make_loan()
    payment = pay(loan, "8606.64", at(FIRST_DUE))
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.allocated_at is not None
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("8606.64")
    assert loan.installments.get(number=1).paid_on_time is True


def test_duplicate_callback_changes_nothing(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "8606.64", at(FIRST_DUE))
    report(attempt, AttemptStatus.SUCCEEDED, at(FIRST_DUE))
    report(attempt, AttemptStatus.SUCCEEDED, at(FIRST_DUE, 11))
    assert Allocation.objects.filter(payment=payment).count() == 2  # interest + principal
    assert PaymentEvent.objects.filter(payment=payment, kind=EventKind.IGNORED).count() == 1


def test_late_failure_after_success_is_recorded_and_ignored(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "8606.64", at(FIRST_DUE))
    report(attempt, AttemptStatus.SUCCEEDED, at(FIRST_DUE))
    report(attempt, AttemptStatus.FAILED, at(FIRST_DUE, 12))
    payment.refresh_from_db()
    attempt.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert attempt.status == AttemptStatus.SUCCEEDED
    ignored = PaymentEvent.objects.get(payment=payment, kind=EventKind.IGNORED)
    assert ignored.data["reported"] == "failed"


def test_late_success_after_failure_makes_payment_succeeded(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "8606.64", at(FIRST_DUE))
    report(attempt, AttemptStatus.FAILED, at(FIRST_DUE, 11), source=EventKind.POLL)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    report(
        attempt,
        AttemptStatus.SUCCEEDED,
        at(FIRST_DUE + timedelta(days=6)),
        accepted_at=at(FIRST_DUE),
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    late = PaymentEvent.objects.get(
        payment=payment, kind=EventKind.STATE_CHANGE, to_status="succeeded"
    )
    assert late.data == {"late_success": True}
    # Accepted on the due date, confirmed six days later: still on time (rule 7).
    assert loan.installments.get(number=1).paid_on_time is True


def test_confirmation_after_grace_but_value_date_on_time_is_on_time(make_loan) -> None:
    loan = make_loan()
    payment = pay(
        loan, "8606.64", at(FIRST_DUE + timedelta(days=10)), accepted_at=at(FIRST_DUE, 23, 59)
    )
    first = loan.installments.get(number=1)
    assert first.paid_on_time is True
    assert first.penalty_due == Decimal("0.00")
    assert payment.value_at == at(FIRST_DUE, 23, 59)


def test_payment_after_grace_is_late_and_pays_penalty_first(make_loan) -> None:
    loan = make_loan()
    late_day = FIRST_DUE + timedelta(days=10)
    pay(loan, "8606.64", at(late_day))
    first = loan.installments.get(number=1)
    # 10 days x 0.05% x 8,606.64 = 43.03 penalty, paid before fee, interest and principal.
    assert first.penalty_due == Decimal("43.03")
    assert first.penalty_paid == Decimal("43.03")
    assert first.paid_value_date is None  # 43.03 of principal still owed
    assert first.principal_due - first.principal_paid == Decimal("43.03")


def test_succeeded_payment_cannot_be_cancelled(make_loan) -> None:
    payment = pay(make_loan(), "100.00", at(FIRST_DUE))
    with pytest.raises(IllegalTransition):
        payment_cancel(payment_id=payment.pk, now=at(FIRST_DUE, 12))


def test_cannot_open_attempt_on_succeeded_payment(make_loan) -> None:
    payment = pay(make_loan(), "100.00", at(FIRST_DUE))
    with pytest.raises(PaymentNotPayable):
        retry_with_alipay(payment, at(FIRST_DUE, 12))


def test_one_open_attempt_per_loan_in_code(make_loan) -> None:
    loan = make_loan()
    open_attempt(loan, "100.00", at(FIRST_DUE))
    with pytest.raises(AttemptAlreadyOpen):
        open_attempt(loan, "200.00", at(FIRST_DUE, 11))


def test_one_open_attempt_per_loan_in_the_database(make_loan) -> None:
    loan = make_loan()
    _, attempt = open_attempt(loan, "100.00", at(FIRST_DUE))
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(
            payment=attempt.payment,
            loan=loan,
            channel=Channel.ALIPAY,
            method_type=PaymentMethodType.ALIPAY_BALANCE,
            out_trade_no="SECOND",
            amount=Decimal("100.00"),
            status=AttemptStatus.UNKNOWN,
            created_at=at(FIRST_DUE),
            updated_at=at(FIRST_DUE),
        )


def test_unknown_attempt_keeps_payment_processing_and_blocks_fallback(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", at(FIRST_DUE))
    report(attempt, AttemptStatus.UNKNOWN, at(FIRST_DUE, 11), source=EventKind.REQUEST)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING
    with pytest.raises(AttemptAlreadyOpen):
        retry_with_alipay(payment, at(FIRST_DUE, 12))


def test_fallback_after_known_failure_gets_new_order_number(make_loan) -> None:
    loan = make_loan()
    payment, first = open_attempt(loan, "100.00", at(FIRST_DUE))
    report(first, AttemptStatus.FAILED, at(FIRST_DUE, 11))
    second = retry_with_alipay(payment, at(FIRST_DUE, 12))
    assert second.out_trade_no != first.out_trade_no
    report(second, AttemptStatus.SUCCEEDED, at(FIRST_DUE, 12))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED


def test_second_success_is_flagged_for_refund_not_booked_twice(make_loan) -> None:
    loan = make_loan()
    payment, first = open_attempt(loan, "100.00", at(FIRST_DUE))
    report(first, AttemptStatus.CLOSED, at(FIRST_DUE, 11))
    second = retry_with_alipay(payment, at(FIRST_DUE, 12))
    report(second, AttemptStatus.SUCCEEDED, at(FIRST_DUE, 12))
    report(
        first, AttemptStatus.SUCCEEDED, at(FIRST_DUE, 13)
    )  # the closed order took money after all
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("100.00")
    note = PaymentEvent.objects.get(payment=payment, kind=EventKind.NOTE)
    assert note.data == {"refund_required": first.out_trade_no}


def test_credit_funded_method_refused_when_product_forbids_it(make_loan) -> None:
    loan = make_loan()
    payment = payment_create(loan=loan, amount="100.00", now=at(FIRST_DUE))
    with pytest.raises(MethodNotAllowed):
        attempt_open(
            payment_id=payment.pk,
            channel=Channel.ALIPAY,
            method_type=PaymentMethodType.ALIPAY_HUABEI,
            now=at(FIRST_DUE),
        )


def test_same_idempotency_key_and_body_returns_same_payment(make_loan) -> None:
    loan = make_loan()
    first = payment_create(loan=loan, amount="100.00", now=at(FIRST_DUE), idempotency_key="k-1")
    again = payment_create(loan=loan, amount="100.00", now=at(FIRST_DUE, 11), idempotency_key="k-1")
    assert again.pk == first.pk


def test_same_idempotency_key_with_other_body_is_refused(make_loan) -> None:
    loan = make_loan()
    payment_create(loan=loan, amount="100.00", now=at(FIRST_DUE), idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        payment_create(loan=loan, amount="100.01", now=at(FIRST_DUE), idempotency_key="k-1")


def test_three_decimal_amount_creates_nothing(make_loan) -> None:
    from repayments.domain.money import InvalidAmount
    from repayments.models import Payment

    with pytest.raises(InvalidAmount):
        payment_create(loan=make_loan(), amount="100.001", now=at(FIRST_DUE))
    assert not Payment.objects.exists()


def test_illegal_transition_rolls_back_everything(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", at(FIRST_DUE))
    report(attempt, AttemptStatus.PENDING, at(FIRST_DUE))
    events_before = PaymentEvent.objects.filter(payment=payment).count()
    with pytest.raises(IllegalTransition):
        report(attempt, AttemptStatus.SUBMITTING, at(FIRST_DUE, 11))
    assert PaymentEvent.objects.filter(payment=payment).count() == events_before
