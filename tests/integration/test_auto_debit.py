"""Withholding on the due date via the sandbox: schedule, claim, retry, no double debit."""

from datetime import date, timedelta

import pytest

from repayments.domain.states import AttemptStatus
from repayments.models import BoundCard, Channel, DebitStatus, ScheduledDebit
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute,
    auto_debit_recover_stale,
    auto_debit_resume_declined,
    auto_debit_schedule,
)
from tests.conftest import at
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)
NINE = at(DUE, 9)


@pytest.fixture
def loan(make_loan):
    loan = make_loan()
    for priority, token in ((1, "tok_first"), (2, "tok_second")):
        BoundCard.objects.create(
            borrower=loan.borrower,
            channel=Channel.UNIONPAY,
            card_token=token,
            card_masked="6222 **** **** 0000",
            bank_name="ICBC",
            priority=priority,
        )
    return loan


def _claim_one() -> int:
    [debit_id] = auto_debit_claim(now=NINE + timedelta(minutes=1))
    return debit_id


def test_schedule_is_idempotent_and_waits_for_nine(loan) -> None:
    assert auto_debit_schedule(run_date=DUE, now=at(DUE, 0, 5)) == 1
    assert auto_debit_schedule(run_date=DUE, now=at(DUE, 0, 6)) == 0
    assert auto_debit_claim(now=at(DUE, 8, 59)) == []
    debit = ScheduledDebit.objects.get()
    assert debit.next_try_at == NINE


def test_claimed_rows_are_not_claimed_again(loan) -> None:
    auto_debit_schedule(run_date=DUE, now=NINE)
    assert len(auto_debit_claim(now=NINE)) == 1
    assert auto_debit_claim(now=NINE) == []


def test_debit_is_sent_with_the_first_card_and_handed_to_status_sync(
    loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit = auto_debit_execute(debit_id=_claim_one(), now=NINE, channels=sandbox_channels)
    assert debit.status == DebitStatus.HANDED_OFF  # accepted; the notify or a query settles it
    [order] = running_sandbox.sandbox.ledger.orders("unionpay")
    assert order.card_token == "{token=tok_first}"
    assert order.amount == loan.installments.get(number=1).total_due


def test_redelivered_task_does_not_debit_again(loan, sandbox_channels, running_sandbox) -> None:
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit_id = _claim_one()
    auto_debit_execute(debit_id=debit_id, now=NINE, channels=sandbox_channels)
    auto_debit_execute(debit_id=debit_id, now=NINE, channels=sandbox_channels)
    assert running_sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_declined_debit_retries_later_on_the_next_card(
    loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"decline_rate": 1.0})
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit = auto_debit_execute(debit_id=_claim_one(), now=NINE, channels=sandbox_channels)
    # The synchronous answer is "accepted"; the decline arrives by notify.
    assert debit.status == DebitStatus.HANDED_OFF
    [notify] = running_sandbox.receiver.wait(1)
    from tests.integration.test_sandbox_channels import _apply

    assert debit.payment is not None
    attempt = debit.payment.attempts.get()
    assert _apply(sandbox_channels, attempt, notify).status == AttemptStatus.FAILED
    # Known not charged: the row goes back in line for the next card, 30 minutes on.
    assert auto_debit_resume_declined(now=NINE + timedelta(minutes=1)) == 1
    debit.refresh_from_db()
    assert debit.status == DebitStatus.WAITING
    assert debit.card_index == 1
    running_sandbox.control("unionpay/faults", {"decline_rate": 0.0})
    [again] = auto_debit_claim(now=debit.next_try_at)
    auto_debit_execute(debit_id=again, now=debit.next_try_at, channels=sandbox_channels)
    cards = [o.card_token for o in running_sandbox.sandbox.ledger.orders("unionpay")]
    assert cards == ["{token=tok_first}", "{token=tok_second}"]


def test_synchronous_decline_schedules_a_retry_on_the_next_card(loan) -> None:
    from tests.integration.fake_channel import FakeChannels

    fakes = FakeChannels()
    fakes("unionpay").create_behaviour = "declined"
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit = auto_debit_execute(debit_id=_claim_one(), now=NINE, channels=fakes)
    assert debit.status == DebitStatus.WAITING
    assert debit.next_try_at == NINE + timedelta(minutes=30)
    assert debit.last_failure_code == "INSUFFICIENT_FUNDS"
    fakes("unionpay").create_behaviour = "succeeded"
    [again] = auto_debit_claim(now=NINE + timedelta(minutes=31))
    debit = auto_debit_execute(debit_id=again, now=NINE + timedelta(minutes=31), channels=fakes)
    assert debit.status == DebitStatus.SUCCEEDED
    assert debit.card_index == 1  # the second card


def test_declines_all_day_give_up_after_the_last_retry(loan) -> None:
    from tests.integration.fake_channel import FakeChannels

    fakes = FakeChannels()
    fakes("unionpay").create_behaviour = "declined"
    auto_debit_schedule(run_date=DUE, now=NINE)
    moment = NINE
    for _ in range(4):
        [debit_id] = auto_debit_claim(now=moment)
        debit = auto_debit_execute(debit_id=debit_id, now=moment, channels=fakes)
        moment = debit.next_try_at
    assert debit.status == DebitStatus.GAVE_UP
    assert len(fakes("unionpay").amounts) == 4


def test_time_out_after_charge_is_never_retried(loan, sandbox_channels, running_sandbox) -> None:
    running_sandbox.control("unionpay/faults", {"timeout_after_charge_rate": 1.0, "hang_ms": 1500})
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit = auto_debit_execute(debit_id=_claim_one(), now=NINE, channels=sandbox_channels)
    assert debit.status == DebitStatus.HANDED_OFF
    assert auto_debit_claim(now=NINE + timedelta(hours=3)) == []
    assert running_sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_row_left_by_a_dead_worker_is_given_back(loan) -> None:
    auto_debit_schedule(run_date=DUE, now=NINE)
    _claim_one()
    assert auto_debit_recover_stale(now=NINE + timedelta(minutes=5)) == 0
    assert auto_debit_recover_stale(now=NINE + timedelta(minutes=20)) == 1
    assert len(auto_debit_claim(now=NINE + timedelta(minutes=20))) == 1


def test_recovered_row_whose_try_reached_the_bank_is_not_debited_again(
    loan, sandbox_channels, running_sandbox
) -> None:
    auto_debit_schedule(run_date=DUE, now=NINE)
    debit_id = _claim_one()
    auto_debit_execute(debit_id=debit_id, now=NINE, channels=sandbox_channels)
    # As if the worker died after the bank call but before recording the row's state.
    ScheduledDebit.objects.filter(pk=debit_id).update(status=DebitStatus.IN_FLIGHT)
    assert auto_debit_recover_stale(now=NINE + timedelta(minutes=20)) == 1
    [again] = auto_debit_claim(now=NINE + timedelta(minutes=20))
    debit = auto_debit_execute(
        debit_id=again, now=NINE + timedelta(minutes=20), channels=sandbox_channels
    )
    assert debit.status == DebitStatus.HANDED_OFF
    assert running_sandbox.sandbox.ledger.requests["unionpay.debits"] == 1
