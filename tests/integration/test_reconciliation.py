"""Daily settlement reconciliation: every kind of difference, repairs, idempotency, command."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone, translation

from repayments.channels.base import (
    ChannelUnavailable,
    InboundCallback,
    SettlementRecord,
    TradeResult,
)
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.management.commands import reconcile as reconcile_command
from repayments.models import (
    Allocation,
    Channel,
    Discrepancy,
    DiscrepancyKind,
    DiscrepancyStatus,
    EventKind,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
    ReconciliationRun,
)
from repayments.services.payments import (
    Outcome,
    attempt_open,
    attempt_record_outcome,
    payment_create,
)
from repayments.services.reconciliation import (
    SHANGHAI,
    reconcile_channel_day,
    reconcile_records,
)
from repayments.services.routing import payment_start
from tests.conftest import at
from tests.integration.conftest import RunningSandbox
from tests.integration.fake_channel import FakeChannel
from tests.integration.helpers import open_attempt, report

pytestmark = pytest.mark.django_db
DAY = date(2026, 2, 5)
ORDERED = at(DAY, 9)
RECONCILED = at(DAY + timedelta(days=1), 11)
QUERY_ACCEPTED = at(DAY, 10, 17)
UNIONPAY = Channel.UNIONPAY


@dataclass
class AskedChannel(FakeChannel):
    """A channel whose query answers what each test sets, and counts the questions."""

    answers: dict[str, TradeResult] = field(default_factory=dict)
    queried: list[str] = field(default_factory=list)
    while_asked: Callable[[], object] | None = None  # what happens elsewhere meanwhile

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        self.queried.append(out_trade_no)
        if self.while_asked is not None:
            self.while_asked()
        if out_trade_no not in self.answers:
            raise ChannelUnavailable("SYSTEM_BUSY", "try later")
        return self.answers[out_trade_no]

    def says_paid(self, attempt: PaymentAttempt, amount: Decimal | None = None) -> None:
        self.answers[attempt.out_trade_no] = TradeResult(
            out_trade_no=attempt.out_trade_no,
            status=AttemptStatus.SUCCEEDED,
            channel_trade_no=f"T{attempt.out_trade_no}",
            amount=amount or attempt.amount,
            accepted_at=QUERY_ACCEPTED,
        )

    def says(self, attempt: PaymentAttempt, status: AttemptStatus) -> None:
        self.answers[attempt.out_trade_no] = TradeResult(attempt.out_trade_no, status)


@pytest.fixture
def bank() -> AskedChannel:
    return AskedChannel("unionpay")


def line(
    attempt: PaymentAttempt | str,
    amount: Decimal | str | None = None,
    *,
    kind: str = "payment",
    trade_no: str = "",
) -> SettlementRecord:
    number = attempt if isinstance(attempt, str) else attempt.out_trade_no
    if amount is None and isinstance(attempt, PaymentAttempt):
        amount = attempt.amount
    return SettlementRecord(
        out_trade_no=number,
        channel_trade_no=trade_no or f"T{number}",
        amount=Decimal(str(amount)),
        kind=kind,
        settled_on=DAY,
    )


def reconcile(records: list[SettlementRecord], bank: AskedChannel) -> ReconciliationRun:
    return reconcile_records(
        channel=UNIONPAY, day=DAY, records=records, now=RECONCILED, channels=lambda _: bank
    )


def confirmed(
    make_loan: Any, amount: str = "8606.64", accepted_at: datetime = ORDERED
) -> PaymentAttempt:
    _, attempt = open_attempt(make_loan(), amount, ORDERED)
    return report(attempt, AttemptStatus.SUCCEEDED, ORDERED, accepted_at=accepted_at)


def pending(make_loan: Any, amount: str = "8606.64") -> PaymentAttempt:
    """Sent and accepted by the bank; its result notify never arrived."""
    _, attempt = open_attempt(make_loan(), amount, ORDERED)
    outcome = Outcome(AttemptStatus.PENDING, EventKind.REQUEST)
    return attempt_record_outcome(attempt_id=attempt.pk, outcome=outcome, now=ORDERED)


def found(kind: DiscrepancyKind, attempt: PaymentAttempt | str) -> Discrepancy:
    number = attempt if isinstance(attempt, str) else attempt.out_trade_no
    return Discrepancy.objects.get(channel=UNIONPAY, day=DAY, kind=kind, out_trade_no=number)


def books() -> dict[str, int]:
    return {
        "events": PaymentEvent.objects.count(),
        "discrepancies": Discrepancy.objects.count(),
        "allocations": Allocation.objects.count(),
    }


# --- paid at the channel, not confirmed here: the one safe repair -----------------------


def test_unconfirmed_payment_is_repaired_at_the_time_the_channel_query_gives(
    make_loan, bank
) -> None:
    attempt = pending(make_loan)
    bank.says_paid(attempt)

    run = reconcile([line(attempt)], bank)

    attempt.refresh_from_db()
    payment = Payment.objects.get(pk=attempt.payment_id)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.accepted_at == QUERY_ACCEPTED  # the channel's time, not the file's day
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.value_at == QUERY_ACCEPTED
    allocations = list(payment.allocations.all())
    assert allocations
    assert all(a.installment_id is not None for a in allocations)
    assert sum(a.amount for a in allocations) == Decimal("8606.64")
    event = payment.events.get(kind=EventKind.SETTLEMENT)
    assert event.to_status == AttemptStatus.SUCCEEDED
    assert event.data["statement"]["out_trade_no"] == attempt.out_trade_no
    assert event.data["statement"]["amount"] == "8606.64"
    assert event.data["query"]["status"] == "succeeded"
    assert event.data["statement_digest"] == run.file_digest
    repaired = found(DiscrepancyKind.NOT_CONFIRMED_HERE, attempt)
    assert repaired.status == DiscrepancyStatus.REPAIRED
    assert repaired.attempt_id == attempt.pk
    assert repaired.run_id == run.pk
    assert (run.line_count, run.matched_count, run.repaired_count) == (1, 0, 1)
    assert run.discrepancy_count == 0


def test_unconfirmed_payment_is_booked_from_the_line_when_the_channel_cannot_be_asked(
    make_loan, bank
) -> None:
    attempt = pending(make_loan)  # bank has no answer: every query is unavailable

    reconcile([line(attempt)], bank)

    attempt.refresh_from_db()
    assert bank.queried == [attempt.out_trade_no]  # asked first
    assert attempt.status == AttemptStatus.SUCCEEDED
    # The statement proves the money by its settlement day, Beijing time.
    assert attempt.accepted_at == datetime(2026, 2, 5, tzinfo=SHANGHAI)
    assert attempt.channel_trade_no == f"T{attempt.out_trade_no}"
    event = PaymentEvent.objects.get(attempt=attempt, kind=EventKind.SETTLEMENT)
    assert event.data["query"] == {"unavailable": "SYSTEM_BUSY"}
    assert Payment.objects.get(pk=attempt.payment_id).allocations.exists()


def test_failed_attempt_the_channel_says_was_paid_becomes_a_late_success(make_loan, bank) -> None:
    _, attempt = open_attempt(make_loan(), "500.00", ORDERED)
    attempt = report(attempt, AttemptStatus.FAILED, ORDERED)
    bank.says_paid(attempt)

    reconcile([line(attempt)], bank)

    payment = Payment.objects.get(pk=attempt.payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    change = payment.events.get(kind=EventKind.STATE_CHANGE, to_status=PaymentStatus.SUCCEEDED)
    assert change.data == {"late_success": True}
    assert found(DiscrepancyKind.NOT_CONFIRMED_HERE, attempt).status == DiscrepancyStatus.REPAIRED


# --- differences left open for support ---------------------------------------------


def test_failed_attempt_the_channel_says_is_unpaid_is_a_status_mismatch(make_loan, bank) -> None:
    _, attempt = open_attempt(make_loan(), "500.00", ORDERED)
    attempt = report(attempt, AttemptStatus.FAILED, ORDERED)
    bank.says(attempt, AttemptStatus.FAILED)

    run = reconcile([line(attempt)], bank)

    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED
    assert not Allocation.objects.exists()
    mismatch = found(DiscrepancyKind.STATUS_MISMATCH, attempt)
    assert mismatch.status == DiscrepancyStatus.OPEN
    assert mismatch.evidence["query"]["status"] == "failed"
    assert run.discrepancy_count == 1
    assert run.repaired_count == 0


def test_statement_amount_that_differs_is_open_and_never_booked(make_loan, bank) -> None:
    attempt = pending(make_loan)
    bank.says_paid(attempt)

    run = reconcile([line(attempt, "8606.65")], bank)

    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PENDING
    assert bank.queried == []  # never even offered to the state machine
    assert not Allocation.objects.exists()
    assert not PaymentEvent.objects.filter(kind=EventKind.SETTLEMENT).exists()
    mismatch = found(DiscrepancyKind.AMOUNT_MISMATCH, attempt)
    assert (mismatch.channel_amount, mismatch.our_amount) == (
        Decimal("8606.65"),
        Decimal("8606.64"),
    )
    assert mismatch.status == DiscrepancyStatus.OPEN
    assert run.repaired_count == 0


def test_query_naming_another_amount_is_open_and_never_booked(make_loan, bank) -> None:
    attempt = pending(make_loan)
    bank.says_paid(attempt, amount=Decimal("1.00"))

    reconcile([line(attempt)], bank)

    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PENDING
    assert not Allocation.objects.exists()
    mismatch = found(DiscrepancyKind.AMOUNT_MISMATCH, attempt)
    assert mismatch.evidence["query"]["amount"] == "1.00"
    assert not Discrepancy.objects.filter(kind=DiscrepancyKind.NOT_CONFIRMED_HERE).exists()


def test_query_naming_another_channel_trade_is_open_and_never_booked(make_loan, bank) -> None:
    attempt = pending(make_loan)
    bank.says_paid(attempt)
    number = attempt.out_trade_no
    bank.answers[number] = replace(bank.answers[number], channel_trade_no="T-ELSEWHERE")

    reconcile([line(attempt)], bank)

    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PENDING
    assert not Allocation.objects.exists()
    unknown = found(DiscrepancyKind.UNKNOWN_ORDER, attempt)
    assert unknown.evidence["reason"] == "query_names_another_channel_trade"


def test_confirmed_here_but_missing_from_the_statement_is_open(make_loan, bank) -> None:
    listed = confirmed(make_loan)
    # 00:30 in Beijing is still the previous day in UTC: it belongs to DAY.
    missing = confirmed(make_loan, accepted_at=at(DAY, 0, 30))
    day_before = confirmed(make_loan, accepted_at=at(DAY - timedelta(days=1), 23, 30))

    run = reconcile([line(listed)], bank)

    gap = found(DiscrepancyKind.MISSING_AT_CHANNEL, missing)
    assert gap.status == DiscrepancyStatus.OPEN
    assert gap.our_amount == missing.amount
    assert not Discrepancy.objects.filter(out_trade_no=day_before.out_trade_no).exists()
    assert (run.line_count, run.matched_count, run.discrepancy_count) == (1, 1, 1)


def test_unknown_order_and_foreign_trade_number_are_open(make_loan, bank) -> None:
    held = confirmed(make_loan)
    PaymentAttempt.objects.filter(pk=held.pk).update(channel_trade_no="T-OURS")

    reconcile([line("AXNOTOURS0001", "50.00"), line(held, trade_no="T-SOMEONE-ELSE")], bank)

    unknown = found(DiscrepancyKind.UNKNOWN_ORDER, "AXNOTOURS0001")
    assert unknown.attempt_id is None
    assert unknown.evidence["reason"] == "no_such_order"
    foreign = found(DiscrepancyKind.UNKNOWN_ORDER, held)
    assert foreign.evidence["reason"] == "channel_trade_no_differs"


def test_refund_line_is_matched_only_against_a_refund_we_recorded(make_loan, bank) -> None:
    refunded, not_refunded = confirmed(make_loan), confirmed(make_loan)
    PaymentEvent.objects.create(
        payment_id=refunded.payment_id,
        attempt=refunded,
        kind=EventKind.REFUND,
        summary="duplicate refund confirmed",
        data={"succeeded": True},
        occurred_at=ORDERED,
    )
    records = [
        line(refunded),
        line(not_refunded),
        line(f"RF{refunded.out_trade_no}", "8606.64", kind="refund"),  # UnionPay numbering
        line(not_refunded, kind="refund"),
    ]

    run = reconcile(records, bank)

    assert not Discrepancy.objects.filter(out_trade_no__contains=refunded.out_trade_no).exists()
    mismatch = found(DiscrepancyKind.STATUS_MISMATCH, not_refunded)
    assert mismatch.evidence["reason"] == "not_refunded_here"
    assert (run.matched_count, run.discrepancy_count) == (2, 1)


def test_a_line_repeated_on_the_statement_is_a_duplicate_and_books_once(make_loan, bank) -> None:
    attempt = pending(make_loan)

    reconcile([line(attempt), line(attempt)], bank)

    payment = Payment.objects.get(pk=attempt.payment_id)
    assert sum(a.amount for a in payment.allocations.all()) == Decimal("8606.64")
    duplicate = found(DiscrepancyKind.DUPLICATE_SUCCESS, attempt)
    assert duplicate.status == DiscrepancyStatus.OPEN
    assert duplicate.evidence["reason"] == "line_repeated"
    assert [entry["record"] for entry in duplicate.evidence["lines"]] == [2]
    assert found(DiscrepancyKind.NOT_CONFIRMED_HERE, attempt).status == DiscrepancyStatus.REPAIRED


def test_two_attempts_of_one_payment_both_settled_flag_the_second_for_refund(
    make_loan, bank
) -> None:
    payment, first = open_attempt(make_loan(), "500.00", ORDERED)
    report(first, AttemptStatus.FAILED, ORDERED)
    second = attempt_open(
        payment_id=payment.pk,
        channel=UNIONPAY,
        method_type=PaymentMethodType.BANK_DEBIT_CARD,
        now=ORDERED,
    )
    report(second, AttemptStatus.SUCCEEDED, ORDERED)
    bank.says_paid(first)  # the "failed" debit did take the money

    reconcile([line(first), line(second)], bank)

    duplicate = found(DiscrepancyKind.DUPLICATE_SUCCESS, first)
    assert duplicate.status == DiscrepancyStatus.OPEN
    assert duplicate.evidence["kept"] == second.out_trade_no
    # The state machine flagged the refund the duplicates_refund sweep sends.
    assert payment.events.filter(data__refund_required=first.out_trade_no).exists()
    assert sum(a.amount for a in payment.allocations.all()) == Decimal("500.00")


# --- idempotency -------------------------------------------------------------------


def test_reimporting_the_same_statement_changes_nothing(make_loan, bank) -> None:
    repair, ok, off = pending(make_loan), confirmed(make_loan), pending(make_loan)
    plain = confirmed(make_loan)
    confirmed(make_loan)  # missing at the channel
    failed = report(pending(make_loan, "10.00"), AttemptStatus.FAILED, ORDERED)
    bank.says_paid(repair)
    bank.says(failed, AttemptStatus.FAILED)
    records = [
        line(plain),
        line(repair),
        line(ok),
        line(ok),
        line(off, "1.00"),
        line(failed),
        line("AXNOTOURS0002", "9.99"),
    ]
    first = reconcile(records, bank)
    before, asked = books(), len(bank.queried)

    again = reconcile(list(records), bank)

    assert books() == before
    assert len(bank.queried) == asked  # the open status mismatch is not re-asked
    assert again.file_digest == first.file_digest
    counts = ("line_count", "matched_count", "repaired_count", "discrepancy_count")
    assert [getattr(again, c) for c in counts] == [getattr(first, c) for c in counts]
    assert [getattr(first, c) for c in counts] == [7, 1, 1, 5]
    assert ReconciliationRun.objects.filter(day=DAY).count() == 2  # each import is logged


def test_an_import_racing_another_one_leaves_one_repair_and_no_extra_event(make_loan, bank) -> None:
    attempt = pending(make_loan)
    bank.says_paid(attempt)
    records = [line(attempt)]
    other_worker = AskedChannel("unionpay", answers=dict(bank.answers))
    # The other import repairs and commits while this one waits for the channel.
    bank.while_asked = lambda: reconcile(records, other_worker)

    run = reconcile(records, bank)

    events = PaymentEvent.objects.filter(payment_id=attempt.payment_id)
    assert events.filter(kind=EventKind.SETTLEMENT).count() == 1
    assert not events.filter(kind=EventKind.IGNORED).exists()  # our copy rolled back whole
    assert Discrepancy.objects.count() == 1
    assert run.repaired_count == 1


# --- through the sandbox over HTTP --------------------------------------------------


def _paid_at_alipay(make_loan, sandbox_channels, running_sandbox, amount: str) -> PaymentAttempt:
    payment = payment_create(loan=make_loan(), amount=amount, now=ORDERED)
    started = payment_start(
        payment_id=payment.pk,
        method_type=PaymentMethodType.ALIPAY_BALANCE,
        now=ORDERED,
        channels=sandbox_channels,
    )
    requests.get(started.next_action.value, timeout=5)  # Alipay opens the trade on this page
    running_sandbox.control(f"alipay/pay/{started.attempt.out_trade_no}")
    return started.attempt


def _apply_notifies(running_sandbox, sandbox_channels, attempts: list[PaymentAttempt]) -> None:
    """Book the signed notifies of ``attempts``; the others' notifies are 'lost'."""
    wanted = {a.out_trade_no: a for a in attempts}
    for notify in running_sandbox.receiver.received:
        result = sandbox_channels("alipay").parse_callback(
            InboundCallback(notify.body, notify.headers), now=timezone.now()
        )
        if result.out_trade_no in wanted:
            outcome = Outcome(
                result.status,
                EventKind.CALLBACK,
                accepted_at=result.accepted_at,
                channel_trade_no=result.channel_trade_no,
            )
            attempt_record_outcome(
                attempt_id=wanted[result.out_trade_no].pk, outcome=outcome, now=ORDERED
            )


def test_alipay_statement_fetched_from_the_sandbox_is_reconciled_end_to_end(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    pay = functools.partial(_paid_at_alipay, make_loan, sandbox_channels, running_sandbox)
    ok, lost, altered, forgotten = pay("100.00"), pay("200.00"), pay("300.00"), pay("400.00")
    running_sandbox.receiver.wait(4)
    _apply_notifies(running_sandbox, sandbox_channels, [ok, altered, forgotten])
    running_sandbox.control(
        "alipay/faults",
        {
            "settlement_mismatches": [altered.out_trade_no],
            "settlement_missing": [forgotten.out_trade_no],
            "settlement_extra_lines": [{"out_trade_no": "AXNOTOURS0003", "amount": "50.00"}],
        },
    )
    today = timezone.localdate()

    def run() -> ReconciliationRun:
        return reconcile_channel_day(
            channel="alipay", day=today, now=timezone.now(), channels=sandbox_channels
        )

    first = run()

    lost.refresh_from_db()
    order = running_sandbox.sandbox.ledger.get("alipay", lost.out_trade_no)
    assert order is not None
    assert order.paid_at is not None
    assert lost.status == AttemptStatus.SUCCEEDED
    assert lost.accepted_at == order.paid_at.replace(microsecond=0)  # from alipay.trade.query
    assert Payment.objects.get(pk=lost.payment_id).allocations.exists()
    event = PaymentEvent.objects.get(attempt=lost, kind=EventKind.SETTLEMENT)
    assert event.data["statement"]["channel_trade_no"] == order.trade_no
    kinds = dict(
        Discrepancy.objects.filter(channel="alipay", day=today).values_list("out_trade_no", "kind")
    )
    assert kinds == {
        lost.out_trade_no: DiscrepancyKind.NOT_CONFIRMED_HERE,
        altered.out_trade_no: DiscrepancyKind.AMOUNT_MISMATCH,
        forgotten.out_trade_no: DiscrepancyKind.MISSING_AT_CHANNEL,
        "AXNOTOURS0003": DiscrepancyKind.UNKNOWN_ORDER,
    }
    counts = ("line_count", "matched_count", "repaired_count", "discrepancy_count")
    assert [getattr(first, c) for c in counts] == [4, 1, 1, 3]
    altered.refresh_from_db()
    assert altered.amount == Decimal("300.00")  # the one-fen-more line changed nothing
    before = books()

    again = run()

    assert books() == before
    assert [getattr(again, c) for c in counts] == [getattr(first, c) for c in counts]
    assert again.file_digest == first.file_digest


def _paid_at(channel: str, make_loan, sandbox_channels, running_sandbox) -> PaymentAttempt:
    payment = payment_create(loan=make_loan(), amount="70.00", now=ORDERED)
    method = {
        "wechatpay": PaymentMethodType.WECHATPAY_BALANCE,
        "unionpay": PaymentMethodType.BANK_DEBIT_CARD,
    }[channel]
    started = payment_start(
        payment_id=payment.pk,
        method_type=method,
        now=ORDERED,
        card_token="tok_1",
        channels=sandbox_channels,
    )
    if channel == "wechatpay":  # withholding settles by itself; a QR code waits for the payer
        running_sandbox.control(f"wechatpay/pay/{started.attempt.out_trade_no}")
    return started.attempt


@pytest.mark.parametrize("channel", ["wechatpay", "unionpay"])
def test_statement_faults_shape_every_channels_file(
    channel, make_loan, sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    kept = _paid_at(channel, make_loan, sandbox_channels, running_sandbox)
    dropped = _paid_at(channel, make_loan, sandbox_channels, running_sandbox)
    running_sandbox.receiver.wait(2)
    running_sandbox.control(
        f"{channel}/faults",
        {
            "settlement_missing": [dropped.out_trade_no],
            "settlement_extra_lines": [
                {"out_trade_no": "AXNOTOURS0004", "amount": "12.34"},
                {"out_trade_no": kept.out_trade_no, "amount": "70.00", "kind": "refund"},
            ],
        },
    )

    records = sandbox_channels(channel).fetch_settlement_file(timezone.localdate())

    assert sorted((r.out_trade_no, r.amount, r.kind) for r in records) == sorted(
        [
            (kept.out_trade_no, Decimal("70.00"), "payment"),
            ("AXNOTOURS0004", Decimal("12.34"), "payment"),
            (kept.out_trade_no, Decimal("70.00"), "refund"),
        ]
    )


def test_malformed_statement_line_fault_is_refused(running_sandbox: RunningSandbox) -> None:
    answer = requests.post(
        f"{running_sandbox.url}/control/alipay/faults",
        json={"settlement_extra_lines": [{"out_trade_no": "X", "amount": "ten"}]},
        timeout=5,
    )

    assert answer.status_code == 400
    assert "amount" in answer.json()["error"]


def test_statement_not_available_is_recorded_on_the_run_and_raised(
    sandbox_channels, running_sandbox: RunningSandbox
) -> None:
    running_sandbox.control("unionpay/faults", {"down": True})

    with pytest.raises(ChannelUnavailable):
        reconcile_channel_day(
            channel="unionpay", day=DAY, now=RECONCILED, channels=sandbox_channels
        )

    run = ReconciliationRun.objects.get(channel="unionpay", day=DAY)
    assert run.error
    assert run.finished_at is not None
    assert not Discrepancy.objects.exists()


# --- the command -----------------------------------------------------------------


def test_reconcile_command_prints_counts_for_the_sandbox_statement(
    make_loan, sandbox_channels, running_sandbox: RunningSandbox, monkeypatch, capsys
) -> None:
    _paid_at_alipay(make_loan, sandbox_channels, running_sandbox, "100.00")
    monkeypatch.setattr(
        reconcile_command,
        "reconcile_channel_day",
        functools.partial(reconcile_channel_day, channels=sandbox_channels),
    )

    with translation.override("en"):
        call_command("reconcile", "--channel", "alipay", "--date", timezone.localdate().isoformat())

    out = capsys.readouterr().out
    assert "1 lines, 0 matched, 1 repaired, 0 discrepancies" in out
    assert "not_confirmed_here repaired 1" in out


def test_reconcile_command_refuses_a_bad_channel_or_a_future_day() -> None:
    with translation.override("en"), pytest.raises(CommandError, match="Unknown channel"):
        call_command("reconcile", "--channel", "paypal", "--date", "2026-02-05")
    tomorrow = timezone.localdate() + timedelta(days=1)
    with pytest.raises(CommandError, match="尚未开始"):  # the default language
        call_command("reconcile", "--date", tomorrow.isoformat())
    assert not ReconciliationRun.objects.exists()


def test_reconcile_command_exits_non_zero_for_a_bad_date() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile", "--channel", "alipay", "--date", "2026-02-30"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert "YYYY-MM-DD" in done.stderr
