"""A batch line that took money twice for one payment must be refundable (rule 4).

The duplicate flag is written as repayments.services.payments._follow_attempt writes it
when a second attempt of a paid payment also succeeds; the refund then goes through the
real UnionPay adapter and the sandbox over HTTP.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from repayments.channels.base import ChannelDeclined
from repayments.domain.states import AttemptStatus
from repayments.models import EventKind, PaymentAttempt, PaymentEvent
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute_many,
    auto_debit_schedule,
)
from repayments.services.janitor import janitor_check_many
from repayments.services.routing import attempt_refund_duplicate, duplicates_refund
from repayments.services.timeline import timeline_record
from tests.conftest import at
from tests.integration.conftest import RunningSandbox
from tests.integration.helpers import bind_debit_card

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)
NINE = at(DUE, 9)


@pytest.fixture(autouse=True)
def sandbox_on_the_due_day(
    running_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(running_sandbox.sandbox, "now", lambda: NINE)


def _charged_batch_lines(make_loan: Any, channels: Any) -> list[PaymentAttempt]:
    loans = []
    for _ in range(2):
        loan = make_loan()
        bind_debit_card(loan.borrower, f"tok_{loan.pk}")
        loans.append(loan)
    auto_debit_schedule(run_date=DUE, now=NINE)
    auto_debit_execute_many(debit_ids=auto_debit_claim(now=NINE), now=NINE, channels=channels)
    lines = list(PaymentAttempt.objects.filter(loan__in=loans).order_by("pk"))
    assert all(line.debit_batch_id is not None for line in lines)
    later = NINE + timedelta(minutes=1)
    janitor_check_many(attempt_ids=[a.pk for a in lines], now=later, channels=channels)
    lines = list(PaymentAttempt.objects.filter(pk__in=[a.pk for a in lines]).order_by("pk"))
    assert {a.status for a in lines} == {AttemptStatus.SUCCEEDED}
    for line in lines:
        timeline_record(
            payment=line.payment,
            attempt=line,
            kind=EventKind.NOTE,
            summary=f"duplicate success on {line.out_trade_no}: refund required",
            now=later,
            data={"refund_required": line.out_trade_no},
        )
    return lines


def test_a_duplicate_batch_line_is_refunded(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    line = _charged_batch_lines(make_loan, sandbox_channels)[0]

    try:
        refunded = attempt_refund_duplicate(
            attempt_id=line.pk, now=NINE + timedelta(minutes=2), channels=sandbox_channels
        )
    except ChannelDeclined as exc:
        pytest.fail(f"refund of a charged batch line refused: {exc.code} {exc.message}")

    assert refunded
    [order] = [
        o
        for o in running_sandbox.sandbox.ledger.orders("unionpay")
        if o.out_trade_no == line.out_trade_no
    ]
    assert order.refunded == line.amount


def test_the_duplicate_sweep_survives_a_refund_it_cannot_send(
    make_loan: Any, sandbox_channels: Any, running_sandbox: RunningSandbox
) -> None:
    lines = _charged_batch_lines(make_loan, sandbox_channels)

    # The bank says the first line was not paid after all: its refund is refused before
    # sending. One refusal must not stop the others, and support sees it once.
    [refused] = [
        o
        for o in running_sandbox.sandbox.ledger.orders("unionpay")
        if o.out_trade_no == lines[0].out_trade_no
    ]
    refused.status = "failed"
    first = duplicates_refund(now=NINE + timedelta(minutes=2), channels=sandbox_channels)
    second = duplicates_refund(now=NINE + timedelta(minutes=3), channels=sandbox_channels)

    assert (first, second) == (1, 0)
    refunds = PaymentEvent.objects.filter(kind=EventKind.REFUND).order_by("pk")
    assert [(e.attempt_id, e.data["succeeded"], e.data["failure_code"]) for e in refunds] == [
        (lines[0].pk, False, "not_paid"),
        (lines[1].pk, True, ""),
    ]
