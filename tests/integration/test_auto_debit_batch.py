"""auto_debit_execute_many: a worker's claimed rows run with shared reads, and each
row ends exactly as auto_debit_execute would leave it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from notifications.models import Notice, NoticeKind
from repayments.domain.states import PaymentStatus
from repayments.models import (
    Allocation,
    DebitStatus,
    LoanProduct,
    Payment,
    PaymentMethodType,
    ScheduledDebit,
)
from repayments.services.audit import audit_verify
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute_many,
    auto_debit_recover_stale,
    auto_debit_schedule,
)
from repayments.services.payments import payment_create
from repayments.services.routing import payment_start
from tests.conftest import at
from tests.integration.fake_channel import FakeChannels
from tests.integration.helpers import bind_debit_card

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)
NINE = at(DUE, 9)


def _loan_with_card(make_loan, token: str, *, is_credit: bool = False):
    loan = make_loan()
    bind_debit_card(loan.borrower, token, is_credit=is_credit)
    return loan


def test_each_row_of_a_batch_is_decided_on_its_own(make_loan) -> None:
    fakes = FakeChannels()
    plain = _loan_with_card(make_loan, "tok_plain")
    paying = _loan_with_card(make_loan, "tok_paying")
    credit_only = _loan_with_card(make_loan, "tok_credit", is_credit=True)
    # The borrower of ``paying`` started a payment of their own before nine.
    own = payment_create(loan=paying, amount="100.00", now=NINE)
    payment_start(
        payment_id=own.pk,
        method_type=PaymentMethodType.BANK_DEBIT_CARD,
        now=NINE,
        card_token="tok_paying",
        channels=fakes,
    )
    assert auto_debit_schedule(run_date=DUE, now=NINE) == 3
    ids = auto_debit_claim(now=NINE)

    done = {d.loan_id: d for d in auto_debit_execute_many(debit_ids=ids, now=NINE, channels=fakes)}

    assert done[plain.pk].status == DebitStatus.HANDED_OFF
    assert done[paying.pk].status == DebitStatus.WAITING
    assert done[paying.pk].last_failure_code == "attempt_in_progress"
    assert done[paying.pk].next_try_at == NINE + timedelta(minutes=30)
    assert done[credit_only.pk].status == DebitStatus.SKIPPED
    assert done[credit_only.pk].last_failure_code == "no_card"
    assert len(fakes("unionpay").amounts) == 2  # the borrower's own order and one debit
    for debit in done.values():
        assert ScheduledDebit.objects.get(pk=debit.pk).status == debit.status


def test_a_batch_delivered_twice_debits_once(make_loan) -> None:
    fakes = FakeChannels()
    for n in range(3):
        _loan_with_card(make_loan, f"tok_{n}")
    auto_debit_schedule(run_date=DUE, now=NINE)
    ids = auto_debit_claim(now=NINE)
    auto_debit_execute_many(debit_ids=ids, now=NINE, channels=fakes)
    auto_debit_execute_many(debit_ids=ids, now=NINE, channels=fakes)
    assert len(fakes("unionpay").amounts) == 3


def test_recovered_rows_whose_try_reached_the_bank_are_not_debited_again(make_loan) -> None:
    fakes = FakeChannels()
    for n in range(2):
        _loan_with_card(make_loan, f"tok_{n}")
    auto_debit_schedule(run_date=DUE, now=NINE)
    ids = auto_debit_claim(now=NINE)
    auto_debit_execute_many(debit_ids=ids, now=NINE, channels=fakes)
    # As if the worker died after the bank calls but before recording the rows' state.
    ScheduledDebit.objects.update(status=DebitStatus.IN_FLIGHT)
    later = NINE + timedelta(minutes=20)
    assert auto_debit_recover_stale(now=later) == 2
    again = auto_debit_claim(now=later)
    done = auto_debit_execute_many(debit_ids=again, now=later, channels=fakes)
    assert [d.status for d in done] == [DebitStatus.HANDED_OFF] * 2
    assert len(fakes("unionpay").amounts) == 2


def test_a_row_that_cannot_open_leaves_no_half_written_batch(make_loan) -> None:
    fakes = FakeChannels()
    plain = _loan_with_card(make_loan, "tok_plain")
    forbidden = _loan_with_card(make_loan, "tok_forbidden")
    allowed = [
        m for m in forbidden.product.allowed_method_types if m != PaymentMethodType.BANK_DEBIT_CARD
    ]
    LoanProduct.objects.filter(pk=forbidden.product_id).update(allowed_method_types=allowed)
    auto_debit_schedule(run_date=DUE, now=NINE)

    done = {
        d.loan_id: d
        for d in auto_debit_execute_many(
            debit_ids=auto_debit_claim(now=NINE), now=NINE, channels=fakes
        )
    }

    assert done[plain.pk].status == DebitStatus.HANDED_OFF
    assert done[forbidden.pk].status == DebitStatus.GAVE_UP
    assert done[forbidden.pk].last_failure_code == "method_not_allowed"
    assert len(fakes("unionpay").amounts) == 1
    # The rolled-back batch left nothing behind: one payment per row, none orphaned.
    assert Payment.objects.filter(loan=plain).count() == 1
    assert Payment.objects.filter(loan=forbidden).count() == 1
    assert audit_verify() is None


def test_a_declined_row_of_a_batch_retries_on_the_next_card(make_loan) -> None:
    fakes = FakeChannels()
    fakes("unionpay").create_behaviour = "declined"
    loan = _loan_with_card(make_loan, "tok_first")
    bind_debit_card(loan.borrower, "tok_second", priority=2, last4="0001")
    auto_debit_schedule(run_date=DUE, now=NINE)
    [debit] = auto_debit_execute_many(
        debit_ids=auto_debit_claim(now=NINE), now=NINE, channels=fakes
    )
    assert debit.status == DebitStatus.WAITING
    assert debit.last_failure_code == "INSUFFICIENT_FUNDS"
    assert debit.card_index == 1
    assert debit.payment is not None
    assert debit.payment.status == PaymentStatus.FAILED
    later = NINE + timedelta(minutes=31)
    fakes("unionpay").create_behaviour = "succeeded"
    [again] = auto_debit_execute_many(
        debit_ids=auto_debit_claim(now=later), now=later, channels=fakes
    )
    assert again.status == DebitStatus.SUCCEEDED
    assert ScheduledDebit.objects.get(pk=again.pk).status == DebitStatus.SUCCEEDED
    assert audit_verify() is None


def test_debits_the_bank_takes_at_once_are_booked_together(make_loan) -> None:
    """The bank answers "paid" on the spot: the batch records and books every row in
    one transaction, each exactly once, with its success notice."""
    fakes = FakeChannels()
    fakes("unionpay").create_behaviour = "succeeded"
    loans = [_loan_with_card(make_loan, f"tok_now{n}") for n in range(3)]
    assert auto_debit_schedule(run_date=DUE, now=NINE) == 3
    ids = auto_debit_claim(now=NINE)

    done = auto_debit_execute_many(debit_ids=ids, now=NINE, channels=fakes)

    assert {d.status for d in done} == {DebitStatus.SUCCEEDED}
    for loan in loans:
        [payment] = Payment.objects.filter(loan=loan)
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.allocated_at is not None
        booked = Allocation.objects.filter(payment=payment)
        assert sum(a.amount for a in booked) == payment.amount
        kinds = set(Notice.objects.filter(subject_id=payment.pk).values_list("kind", flat=True))
        assert NoticeKind.PAYMENT_SUCCEEDED in kinds
    assert len(fakes("unionpay").charges) == 3
    assert audit_verify() is None
