"""Batch lines looked up one at a time, and a line a held batch's result file leaves out.

A line missing from the file of a batch UnionPay holds arrived with it: it is never
failed for being absent, and when its own order look-up knows the result (here: the
card was debited) status sync and reconciliation book it. A single look-up of a batch
line (reconciliation, a borrower's page) asks the order itself, not the whole file.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from repayments.channels.unionpay import txn_time
from repayments.domain.states import AttemptStatus
from repayments.models import DebitBatch, PaymentAttempt
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute_many,
    auto_debit_schedule,
)
from repayments.services.janitor import janitor_check_many
from repayments.services.reconciliation import reconcile_channel_day
from tests.conftest import at
from tests.integration.conftest import RunningSandbox
from tests.integration.helpers import bind_debit_card

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)
NINE = at(DUE, 9)
NEXT_MORNING = at(DUE + timedelta(days=1), 11)


@pytest.fixture(autouse=True)
def sandbox_on_the_due_day(
    running_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox's clock gives the debits their value date: keep it on the due day.
    monkeypatch.setattr(running_sandbox.sandbox, "now", lambda: NINE)


def _send_due_debits(make_loan: Any, channels: Any, count: int) -> list[PaymentAttempt]:
    for _ in range(count):
        loan = make_loan()
        bind_debit_card(loan.borrower, f"tok_{loan.pk}")
    auto_debit_schedule(run_date=DUE, now=NINE)
    auto_debit_execute_many(debit_ids=auto_debit_claim(now=NINE), now=NINE, channels=channels)
    attempts = list(PaymentAttempt.objects.order_by("pk"))
    assert len(attempts) == count
    assert DebitBatch.objects.count() == 1
    return attempts


def _leave_out_of_the_result_file(
    running_sandbox: RunningSandbox, left_out: PaymentAttempt
) -> None:
    batch = DebitBatch.objects.get()
    lines = running_sandbox.sandbox.ledger.batch(
        "unionpay", f"{batch.batch_no}:{txn_time(batch.placed_at)}"
    )
    assert lines is not None
    assert {order.status for order in lines} == {"succeeded"}  # every card was debited
    lines[:] = [order for order in lines if order.out_trade_no != left_out.out_trade_no]


def test_status_sync_books_a_debited_line_the_result_file_leaves_out(
    make_loan: Any, running_sandbox: RunningSandbox, sandbox_channels: Any
) -> None:
    kept, left_out = _send_due_debits(make_loan, sandbox_channels, 2)
    _leave_out_of_the_result_file(running_sandbox, left_out)
    janitor_check_many(
        attempt_ids=[kept.pk, left_out.pk],
        now=NINE + timedelta(minutes=1),
        channels=sandbox_channels,
    )
    kept.refresh_from_db()
    left_out.refresh_from_db()
    assert (kept.status, left_out.status) == (AttemptStatus.SUCCEEDED, AttemptStatus.SUCCEEDED)
    assert running_sandbox.sandbox.ledger.requests.get("unionpay.charged") == 2


def test_a_left_out_line_whose_order_is_not_found_stays_pending(
    make_loan: Any, running_sandbox: RunningSandbox, sandbox_channels: Any
) -> None:
    # Neither the file nor the order look-up knows it yet: it may still be debited, so
    # it is never failed (a failure would free the row for the borrower's next card).
    kept, left_out = _send_due_debits(make_loan, sandbox_channels, 2)
    _leave_out_of_the_result_file(running_sandbox, left_out)
    ledger = running_sandbox.sandbox.ledger
    ledger._orders.pop(("unionpay", left_out.out_trade_no))
    janitor_check_many(
        attempt_ids=[kept.pk, left_out.pk],
        now=NINE + timedelta(hours=3),
        channels=sandbox_channels,
    )
    left_out.refresh_from_db()
    assert left_out.status == AttemptStatus.PENDING


def test_reconciliation_books_a_debited_line_the_result_file_leaves_out(
    make_loan: Any, running_sandbox: RunningSandbox, sandbox_channels: Any
) -> None:
    _, left_out = _send_due_debits(make_loan, sandbox_channels, 2)
    _leave_out_of_the_result_file(running_sandbox, left_out)
    reconcile_channel_day(channel="unionpay", day=DUE, now=NEXT_MORNING, channels=sandbox_channels)
    left_out.refresh_from_db()
    assert left_out.status == AttemptStatus.SUCCEEDED


def test_reconciling_a_batchs_lines_asks_each_order_not_the_whole_file_each_time(
    make_loan: Any, sandbox_channels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = 12
    _send_due_debits(make_loan, sandbox_channels, lines)
    # Status sync has not confirmed them: reconciliation asks for each line.
    assert PaymentAttempt.objects.filter(status=AttemptStatus.PENDING).count() == lines
    unionpay = sandbox_channels("unionpay")
    batch_queries: list[int] = []
    real = unionpay.query_debit_batch

    def counted(**kwargs: Any) -> Any:
        batch_queries.append(len(kwargs["out_trade_nos"]))
        return real(**kwargs)

    monkeypatch.setattr(unionpay, "query_debit_batch", counted)
    with CaptureQueriesContext(connection) as queries:
        reconcile_channel_day(
            channel="unionpay", day=DUE, now=NEXT_MORNING, channels=sandbox_channels
        )
    batch_reads = [
        q for q in queries.captured_queries if f'FROM "{DebitBatch._meta.db_table}"' in q["sql"]
    ]
    assert PaymentAttempt.objects.filter(status=AttemptStatus.SUCCEEDED).count() == lines
    assert (batch_queries, batch_reads) == ([], [])
