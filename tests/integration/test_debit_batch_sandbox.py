"""Due-day withholding as UnionPay batch files, end to end through the sandbox over HTTP:
auto_debit_execute_many sends one batch, janitor_check_many reads it back with one batch
query, and faults on the way (declines, a lost answer, maintenance) end as they must."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from repayments.channels.base import ChannelOutcomeUnknown, DebitBatchLine, TradeResult
from repayments.channels.crypto import load_private_key
from repayments.channels.unionpay import (
    BATCH_TRANS_PATH,
    encode_batch_file,
    encode_form,
    parse_form,
    sign_fields,
    txn_time,
)
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Allocation,
    DebitBatch,
    DebitStatus,
    Installment,
    Loan,
    Payment,
    PaymentAttempt,
    ScheduledDebit,
)
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute_many,
    auto_debit_resume_declined,
    auto_debit_schedule,
)
from repayments.services.janitor import janitor_check_many
from tests.conftest import at
from tests.integration.conftest import RunningSandbox
from tests.integration.helpers import bind_debit_card

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)
NINE = at(DUE, 9)
LATER = NINE + timedelta(minutes=1)
LINES = 5


@pytest.fixture(autouse=True)
def sandbox_on_the_due_day(
    running_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox stamps a debit with its own clock (traceTime, hence the value date);
    # on the wall clock a February debit would be booked months late, with penalties.
    monkeypatch.setattr(running_sandbox.sandbox, "now", lambda: NINE)


def _due_loans(make_loan: Any, count: int, *, cards: int = 1) -> list[Loan]:
    """Loans whose first installment falls due on DUE, each borrower with ``cards`` cards."""
    loans = []
    for _ in range(count):
        loan = make_loan()
        for index in range(cards):
            bind_debit_card(
                loan.borrower, _token(loan, index), priority=index + 1, last4=f"{index:04d}"
            )
        loans.append(loan)
    return loans


def _token(loan: Loan, card: int) -> str:
    return f"tok_{loan.pk}_{card}"


def _run(channels: Any, now: datetime, *, limit: int = 500) -> list[ScheduledDebit]:
    return auto_debit_execute_many(
        debit_ids=auto_debit_claim(now=now, limit=limit), now=now, channels=channels
    )


def _counts(sandbox: RunningSandbox) -> dict[str, int]:
    """The sandbox's request counters, read over its control API."""
    response = requests.get(f"{sandbox.url}/control/state", timeout=5)
    response.raise_for_status()
    counts: dict[str, int] = response.json()["requests"]
    return counts


def _attempts(loans: list[Loan]) -> list[PaymentAttempt]:
    return list(PaymentAttempt.objects.filter(loan__in=loans).order_by("loan_id", "pk"))


def _first_due(loan: Loan) -> Installment:
    installment = loan.installments.get(number=1)
    assert installment.due_date == DUE
    return installment


def test_due_debits_go_out_as_one_batch_and_one_batch_query_confirms_them(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    loans = _due_loans(make_loan, LINES)
    owed = {loan.pk: _first_due(loan).total_due for loan in loans}
    assert auto_debit_schedule(run_date=DUE, now=NINE) == LINES

    done = _run(sandbox_channels, NINE)

    assert [d.status for d in done] == [DebitStatus.HANDED_OFF] * LINES
    counts = _counts(running_sandbox)
    assert counts["unionpay.batches"] == 1
    assert counts["unionpay.debits"] == LINES
    assert counts["unionpay.requests"] == 1  # the whole file in one call
    [batch] = DebitBatch.objects.all()
    assert (batch.channel, batch.batch_no, batch.placed_on) == ("unionpay", "0001", DUE)
    assert batch.placed_at == NINE
    assert batch.line_count == LINES
    assert batch.total_amount == sum(owed.values())
    attempts = _attempts(loans)
    assert len(attempts) == LINES
    assert {a.debit_batch_id for a in attempts} == {batch.pk}
    assert {a.status for a in attempts} == {AttemptStatus.PENDING}
    orders = {o.out_trade_no: o for o in running_sandbox.sandbox.ledger.orders("unionpay")}
    assert set(orders) == {a.out_trade_no for a in attempts}
    for attempt in attempts:
        order = orders[attempt.out_trade_no]
        assert order.amount == attempt.amount == owed[attempt.loan_id]
        assert order.card_token == f"{{token={_token(attempt.loan, 0)}}}"
        assert order.extra["txnTime"] == txn_time(NINE)
    assert running_sandbox.sandbox.notifier.sent == 0  # batch lines send no callbacks

    statuses = janitor_check_many(
        attempt_ids=[a.pk for a in attempts], now=LATER, channels=sandbox_channels
    )

    assert statuses == dict.fromkeys([a.pk for a in attempts], AttemptStatus.SUCCEEDED)
    counts = _counts(running_sandbox)
    assert counts["unionpay.requests"] == 2  # one batch query asked for every line
    assert counts["unionpay.charged"] == LINES
    for loan in loans:
        [payment] = Payment.objects.filter(loan=loan)
        assert payment.status == PaymentStatus.SUCCEEDED
        assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == owed[loan.pk]
        installment = _first_due(loan)
        assert installment.total_paid == installment.total_due
        assert installment.paid_value_date == DUE
    for attempt in PaymentAttempt.objects.filter(pk__in=[a.pk for a in attempts]):
        assert attempt.channel_trade_no == orders[attempt.out_trade_no].trade_no


def test_declined_lines_fail_on_the_batch_query_and_go_back_for_the_next_card(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"decline_rate": 1.0})
    loans = _due_loans(make_loan, LINES, cards=2)
    auto_debit_schedule(run_date=DUE, now=NINE)

    done = _run(sandbox_channels, NINE)

    # The file was accepted: each line's decline is only learnt from the batch query.
    assert [d.status for d in done] == [DebitStatus.HANDED_OFF] * LINES
    attempts = _attempts(loans)
    statuses = janitor_check_many(
        attempt_ids=[a.pk for a in attempts], now=LATER, channels=sandbox_channels
    )
    assert statuses == dict.fromkeys([a.pk for a in attempts], AttemptStatus.FAILED)
    assert {a.failure_code for a in PaymentAttempt.objects.filter(loan__in=loans)} == {"64"}
    assert {p.status for p in Payment.objects.filter(loan__in=loans)} == {PaymentStatus.FAILED}

    assert auto_debit_resume_declined(now=LATER) == LINES

    for debit in ScheduledDebit.objects.filter(loan__in=loans):
        assert debit.status == DebitStatus.WAITING
        assert debit.card_index == 1
        assert debit.last_failure_code == "64"
        assert debit.next_try_at == LATER + timedelta(minutes=30)
    counts = _counts(running_sandbox)
    assert counts.get("unionpay.charged", 0) == 0
    assert counts["unionpay.debits"] == LINES
    # The next try, once the bank takes debits again, goes to each borrower's second card.
    running_sandbox.control("unionpay/faults", {"decline_rate": 0.0})
    retry_at = LATER + timedelta(minutes=30)
    assert [d.status for d in _run(sandbox_channels, retry_at)] == [DebitStatus.HANDED_OFF] * LINES
    tokens = sorted(o.card_token for o in running_sandbox.sandbox.ledger.orders("unionpay"))
    expected = [f"{{token={_token(loan, card)}}}" for loan in loans for card in (0, 1)]
    assert tokens == sorted(expected)
    # The retries went out together too: one more batch file, not one order each.
    assert _counts(running_sandbox)["unionpay.batches"] == 2


def test_a_batch_answer_lost_after_the_debits_is_settled_by_the_batch_query_once(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    # sandbox_channels' adapters give up after 1 s: the answer comes half a second late.
    running_sandbox.control("unionpay/faults", {"timeout_after_charge_rate": 1.0, "hang_ms": 1500})
    loans = _due_loans(make_loan, LINES, cards=2)
    auto_debit_schedule(run_date=DUE, now=NINE)

    done = _run(sandbox_channels, NINE)

    assert [d.status for d in done] == [DebitStatus.HANDED_OFF] * LINES
    attempts = _attempts(loans)
    assert {(a.status, a.failure_code) for a in attempts} == {(AttemptStatus.UNKNOWN, "no_answer")}
    # Auto-debit never tries these again: the money may have moved.
    assert auto_debit_resume_declined(now=LATER) == 0
    assert auto_debit_claim(now=NINE + timedelta(hours=3)) == []
    counts = _counts(running_sandbox)
    assert (counts["unionpay.batches"], counts["unionpay.debits"]) == (1, LINES)
    assert counts["unionpay.charged"] == LINES

    statuses = janitor_check_many(
        attempt_ids=[a.pk for a in attempts], now=LATER, channels=sandbox_channels
    )

    assert statuses == dict.fromkeys([a.pk for a in attempts], AttemptStatus.SUCCEEDED)
    again = janitor_check_many(
        attempt_ids=[a.pk for a in attempts],
        now=LATER + timedelta(minutes=1),
        channels=sandbox_channels,
    )
    assert again == statuses
    for loan in loans:
        [payment] = Payment.objects.filter(loan=loan)
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.attempts.count() == 1
        booked = Allocation.objects.filter(payment=payment)
        assert sum(a.amount for a in booked) == payment.amount == _first_due(loan).total_due
    counts = _counts(running_sandbox)
    assert (counts["unionpay.debits"], counts["unionpay.charged"]) == (LINES, LINES)
    assert counts["unionpay.batches"] == 1
    charged = running_sandbox.sandbox.ledger.orders("unionpay")
    assert sorted(o.out_trade_no for o in charged) == sorted(a.out_trade_no for a in attempts)
    assert {o.status for o in charged} == {"succeeded"}


def test_a_batch_refused_for_maintenance_fails_each_line_without_charging(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"maintenance": True})
    loans = _due_loans(make_loan, LINES, cards=2)
    auto_debit_schedule(run_date=DUE, now=NINE)

    done = _run(sandbox_channels, NINE)

    attempts = _attempts(loans)
    assert len(attempts) == LINES
    assert {(a.status, a.failure_code) for a in attempts} == {(AttemptStatus.FAILED, "39")}
    assert {p.status for p in Payment.objects.filter(loan__in=loans)} == {PaymentStatus.FAILED}
    # Known not charged (39 is a refusal), so each row waits for its next card.
    for debit in done:
        assert (debit.status, debit.card_index, debit.last_failure_code) == (
            DebitStatus.WAITING,
            1,
            "39",
        )
    counts = _counts(running_sandbox)
    assert counts["unionpay.requests"] == 1
    assert "unionpay.batches" not in counts
    assert "unionpay.debits" not in counts
    assert "unionpay.charged" not in counts
    assert running_sandbox.sandbox.ledger.orders("unionpay") == []


def test_two_runs_on_one_day_take_batch_numbers_0001_and_0002(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    loans = _due_loans(make_loan, 4)
    auto_debit_schedule(run_date=DUE, now=NINE)

    first = _run(sandbox_channels, NINE, limit=2)
    second = _run(sandbox_channels, LATER, limit=2)

    assert [d.status for d in first + second] == [DebitStatus.HANDED_OFF] * 4
    batches = list(DebitBatch.objects.order_by("batch_no"))
    assert [(b.batch_no, b.placed_on, b.line_count) for b in batches] == [
        ("0001", DUE, 2),
        ("0002", DUE, 2),
    ]
    assert [b.placed_at for b in batches] == [NINE, LATER]
    for run, batch in ((first, batches[0]), (second, batches[1])):
        lines = PaymentAttempt.objects.filter(payment_id__in=[d.payment_id for d in run])
        assert {a.debit_batch_id for a in lines} == {batch.pk}
        assert batch.total_amount == sum(a.amount for a in lines)
    counts = _counts(running_sandbox)
    assert (counts["unionpay.batches"], counts["unionpay.debits"]) == (2, 4)
    statuses = janitor_check_many(
        attempt_ids=[a.pk for a in _attempts(loans)],
        now=LATER + timedelta(minutes=1),
        channels=sandbox_channels,
    )
    assert set(statuses.values()) == {AttemptStatus.SUCCEEDED}
    assert _counts(running_sandbox)["unionpay.requests"] == 4  # two sends, two batch queries


def test_a_single_due_debit_goes_out_as_an_ordinary_order(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    [loan] = _due_loans(make_loan, 1)
    auto_debit_schedule(run_date=DUE, now=NINE)

    [debit] = _run(sandbox_channels, NINE)

    assert debit.status == DebitStatus.HANDED_OFF
    counts = _counts(running_sandbox)
    assert counts["unionpay.debits"] == 1
    assert counts.get("unionpay.batches", 0) == 0
    assert not DebitBatch.objects.exists()
    [attempt] = _attempts([loan])
    assert attempt.debit_batch_id is None
    [order] = running_sandbox.sandbox.ledger.orders("unionpay")
    assert order.out_trade_no == attempt.out_trade_no
    assert order.notify_url.endswith("/callbacks/unionpay/")  # the single-order protocol
    assert order.card_token == f"{{token={_token(loan, 0)}}}"
    running_sandbox.receiver.wait(1)  # its result notification
    statuses = janitor_check_many(attempt_ids=[attempt.pk], now=LATER, channels=sandbox_channels)
    assert statuses == {attempt.pk: AttemptStatus.SUCCEEDED}
    installment = _first_due(loan)
    assert installment.total_paid == installment.total_due


# --- The sandbox's batch endpoint itself ---------------------------------------------------


def _lines(count: int) -> list[DebitBatchLine]:
    return [
        DebitBatchLine(f"AX20260205BATCH{n:015d}", Decimal("10.00") * (n + 1), f"tok_{n}")
        for n in range(count)
    ]


def test_a_batch_number_sent_twice_is_refused_and_debits_once(
    sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    unionpay = sandbox_channels("unionpay")
    lines = _lines(3)
    first = unionpay.submit_debit_batch(batch_no="0001", placed_at=NINE, lines=lines)
    assert [r.status for r in first if isinstance(r, TradeResult)] == [AttemptStatus.PENDING] * 3

    again = unionpay.submit_debit_batch(batch_no="0001", placed_at=NINE, lines=lines)

    # 12, a batch number already taken: the first file may have debited, so "unknown".
    assert [(type(r), getattr(r, "code", "")) for r in again] == [(ChannelOutcomeUnknown, "12")] * 3
    counts = _counts(running_sandbox)
    assert (counts["unionpay.batches"], counts["unionpay.debits"]) == (1, 3)
    found = unionpay.query_debit_batch(
        batch_no="0001", placed_at=NINE, out_trade_nos=[line.out_trade_no for line in lines]
    )
    assert {n: (r.status, r.amount) for n, r in found.items()} == {
        line.out_trade_no: (AttemptStatus.SUCCEEDED, line.amount) for line in lines
    }
    # Each line is an order of its own: the single-order query finds it too.
    single = unionpay.query(lines[1].out_trade_no, placed_at=NINE)
    assert (single.status, single.amount) == (AttemptStatus.SUCCEEDED, lines[1].amount)


def _post_batch(running_sandbox: RunningSandbox, keys: Any, settings: Any, **fields: str) -> dict:
    request = {
        "version": "5.1.0",
        "encoding": "UTF-8",
        "signMethod": "01",
        "txnType": "21",
        "txnSubType": "02",
        "bizType": "000501",
        "accessType": "0",
        "channelType": "07",
        "merId": settings.UNIONPAY_MER_ID,
        "batchNo": "0001",
        "txnTime": txn_time(NINE),
    } | fields
    key = load_private_key(keys / "unionpay" / "merchant_private.pem")
    response = requests.post(
        f"{running_sandbox.url}/unionpay{BATCH_TRANS_PATH}",
        data=encode_form(sign_fields(request, key)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    response.raise_for_status()
    return parse_form(response.content)


@pytest.mark.parametrize(
    ("qty", "amt", "code"),
    [("3", "5999", "13"), ("2", "6000", "13"), ("3", "6000", "00")],
    ids=["amount-off", "count-off", "matching"],
)
def test_the_sandbox_refuses_a_batch_whose_totals_do_not_match_its_file(
    running_sandbox: RunningSandbox,
    channel_keys: Any,
    settings: Any,
    qty: str,
    amt: str,
    code: str,
) -> None:
    rows = [(line.out_trade_no, str(int(line.amount * 100)), line.card_token) for line in _lines(3)]
    answer = _post_batch(
        running_sandbox,
        channel_keys,
        settings,
        totalQty=qty,
        totalAmt=amt,
        fileContent=encode_batch_file(rows),
    )
    assert (answer["respCode"], answer["batchNo"]) == (code, "0001")
    debits = _counts(running_sandbox).get("unionpay.debits", 0)
    assert debits == (3 if code == "00" else 0)


def test_the_sandbox_refuses_an_unreadable_batch_file(
    running_sandbox: RunningSandbox, channel_keys: Any, settings: Any
) -> None:
    answer = _post_batch(
        running_sandbox, channel_keys, settings, totalQty="1", totalAmt="100", fileContent="@@"
    )
    assert answer["respCode"] == "10"
    assert "unionpay.debits" not in _counts(running_sandbox)
