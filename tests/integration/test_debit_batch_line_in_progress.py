"""A line of a batch UnionPay holds but has not worked through yet is not "not found".

The sandbox takes a batch's number before it debits the lines (so a batch query can see
the batch while its lines are still being debited). The adapter reads any line missing
from a known batch's result file like an order that never arrived: FAILED once ten
minutes have passed since placing. For a batch UnionPay holds, the line did arrive; it
is only not done yet. Failing it frees the row for its next card while the first card
is still to be debited: the borrower pays twice (rule 4).
"""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest

from repayments.channels.unionpay import UnionPayChannel, UnionPayConfig
from repayments.domain.states import AttemptStatus
from repayments.models import DebitStatus, PaymentAttempt, ScheduledDebit
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
# The janitor's look while UnionPay is still working through the file.
QUERIED = NINE + timedelta(minutes=11)


def _adapter(running_sandbox: RunningSandbox, keys: Any, settings: Any) -> UnionPayChannel:
    return UnionPayChannel(
        UnionPayConfig(
            mer_id=settings.UNIONPAY_MER_ID,
            api_url=f"{running_sandbox.url}/unionpay",
            merchant_private_key_path=str(keys / "unionpay" / "merchant_private.pem"),
            platform_public_key_path=str(keys / "unionpay" / "platform_public.pem"),
            timeout=5.0,
        ),
        clock=lambda: QUERIED,
    )


def test_a_line_unionpay_has_not_reached_yet_is_not_failed_and_not_charged_twice(
    make_loan: Any,
    running_sandbox: RunningSandbox,
    channel_keys: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(running_sandbox.sandbox, "now", lambda: NINE)
    settings.PORTAL_BASE_URL = running_sandbox.receiver.url.removesuffix("/callbacks/")
    loans = []
    for _ in range(2):
        loan = make_loan()
        bind_debit_card(loan.borrower, f"tok_{loan.pk}_a", priority=1, last4="0001")
        bind_debit_card(loan.borrower, f"tok_{loan.pk}_b", priority=2, last4="0002")
        loans.append(loan)
    auto_debit_schedule(run_date=DUE, now=NINE)

    # UnionPay debits the file's lines one after another; the janitor asks in between.
    bank: Any = running_sandbox.sandbox.channels["unionpay"]
    real_debit = bank._debit
    first_done, go_on = threading.Event(), threading.Event()

    def debit_slowly(*args: Any, **kwargs: Any) -> Any:
        if first_done.is_set() is False and bank.sandbox.ledger.orders("unionpay"):
            first_done.set()  # the first line is debited, the second not yet
            assert go_on.wait(20)
        return real_debit(*args, **kwargs)

    monkeypatch.setattr(bank, "_debit", debit_slowly)
    adapter = _adapter(running_sandbox, channel_keys, settings)

    class Concurrent:
        """The adapter, with a janitor run while the batch is being worked through."""

        max_batch_lines = adapter.max_batch_lines

        def __getattr__(self, name: str) -> Any:
            return getattr(adapter, name)

        def submit_debit_batch(self, **kwargs: Any) -> Any:
            answers: list[Any] = []
            sender = threading.Thread(
                target=lambda: answers.extend(adapter.submit_debit_batch(**kwargs))
            )
            sender.start()
            assert first_done.wait(20)
            ids = list(PaymentAttempt.objects.values_list("pk", flat=True))
            janitor_check_many(attempt_ids=ids, now=QUERIED, channels=channels)
            go_on.set()
            sender.join(20)
            return answers

        def query_debit_batch(self, **kwargs: Any) -> Any:
            return adapter.query_debit_batch(**kwargs)

    concurrent = Concurrent()

    def channels(name: str) -> Any:
        assert name == "unionpay"
        return concurrent

    auto_debit_execute_many(debit_ids=auto_debit_claim(now=NINE), now=NINE, channels=channels)
    charged_in_batch = {
        o.out_trade_no
        for o in running_sandbox.sandbox.ledger.orders("unionpay")
        if o.status == "succeeded"
    }
    assert len(charged_in_batch) == 2  # UnionPay debited both lines of the file

    # No line UnionPay was still to debit may have been called failed.
    failed = [
        (a.out_trade_no, a.failure_code)
        for a in PaymentAttempt.objects.filter(status=AttemptStatus.FAILED)
    ]

    # Nor may its row be sent to the borrower's next card.
    auto_debit_resume_declined(now=QUERIED)
    retry = NINE + timedelta(hours=1)
    auto_debit_execute_many(
        debit_ids=auto_debit_claim(now=retry), now=retry, channels=lambda _: adapter
    )
    cards_debited = [
        o.card_token
        for o in running_sandbox.sandbox.ledger.orders("unionpay")
        if o.status == "succeeded"
    ]
    assert len(cards_debited) == len(loans), (
        f"{len(cards_debited)} debits for {len(loans)} installments; failed lines: {failed}"
    )
    assert not failed
    assert not ScheduledDebit.objects.filter(status=DebitStatus.WAITING).exists()
