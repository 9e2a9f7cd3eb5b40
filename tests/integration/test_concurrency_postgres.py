"""Rules 3 and 4 under real concurrency: threads, real transactions, PostgreSQL row locks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from django.db import connection

from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import Allocation, EventKind, Payment, PaymentAttempt
from repayments.services.allocation import payment_allocate
from repayments.services.audit import audit_append, audit_verify
from repayments.services.errors import AlreadyAllocated, AttemptAlreadyOpen
from repayments.services.payments import Outcome, attempt_record_outcome, payment_create
from tests.conftest import at
from tests.integration.helpers import open_attempt

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
DUE = date(2026, 2, 5)


def race(workers: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job`` in ``workers`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = job(index)
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_workers_allocating_one_payment_book_it_once(make_loan) -> None:
    loan = make_loan()
    payment, _attempt = open_attempt(loan, "8606.64", at(DUE))
    # Succeeded but not yet booked: the moment a crash-and-retry would race.
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.SUCCEEDED, value_at=at(DUE))
    results = race(2, lambda _: payment_allocate(payment_id=payment.pk, now=at(DUE)))
    assert sum(isinstance(r, AlreadyAllocated) for r in results) == 1
    assert sum(isinstance(r, list) for r in results) == 1
    total = sum(a.amount for a in Allocation.objects.filter(payment=payment))
    assert total == Decimal("8606.64")
    first = loan.installments.get(number=1)
    assert first.principal_paid + first.interest_paid == Decimal("8606.64")


def test_concurrent_duplicate_callbacks_apply_once(make_loan) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "8606.64", at(DUE))
    outcome = Outcome(
        status=AttemptStatus.SUCCEEDED, source=EventKind.CALLBACK, accepted_at=at(DUE)
    )
    results = race(
        8, lambda _: attempt_record_outcome(attempt_id=attempt.pk, outcome=outcome, now=at(DUE))
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert Allocation.objects.filter(payment=payment).count() == 2
    assert payment.events.filter(kind=EventKind.IGNORED).count() == 7
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("8606.64")


def test_concurrent_attempts_on_one_loan_leave_one_open(make_loan) -> None:
    from repayments.models import Channel, PaymentMethodType
    from repayments.services.payments import attempt_open

    loan = make_loan()
    payments = [payment_create(loan=loan, amount="100.00", now=at(DUE)) for _ in range(4)]

    def start(index: int) -> PaymentAttempt:
        return attempt_open(
            payment_id=payments[index].pk,
            channel=Channel.ALIPAY,
            method_type=PaymentMethodType.ALIPAY_BALANCE,
            now=at(DUE),
        )

    results = race(4, start)
    assert sum(isinstance(r, PaymentAttempt) for r in results) == 1
    assert sum(isinstance(r, AttemptAlreadyOpen) for r in results) == 3
    assert PaymentAttempt.objects.filter(loan=loan).count() == 1


def test_concurrent_requests_with_one_idempotency_key_make_one_payment(make_loan) -> None:
    loan = make_loan()
    results = race(
        6, lambda _: payment_create(loan=loan, amount="100.00", now=at(DUE), idempotency_key="same")
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r.pk for r in results}) == 1
    assert Payment.objects.filter(loan=loan).count() == 1


def test_concurrent_audit_appends_keep_one_chain() -> None:
    def append(index: int) -> None:
        for n in range(10):
            audit_append(action="race", object_type="t", object_id=f"{index}-{n}", now=at(DUE))

    results = race(6, append)
    assert not [r for r in results if isinstance(r, Exception)]
    assert audit_verify() is None


def test_concurrent_debit_claimers_never_take_the_same_row(make_loan) -> None:
    from repayments.models import BoundCard, Channel, ScheduledDebit
    from repayments.services.autodebit import auto_debit_claim, auto_debit_schedule

    for n in range(30):
        loan = make_loan()
        BoundCard.objects.create(
            borrower=loan.borrower,
            channel=Channel.UNIONPAY,
            card_token=f"tok-{n}",
            card_masked="6222 **** **** 0000",
            bank_name="ICBC",
        )
    assert auto_debit_schedule(run_date=DUE, now=at(DUE, 0)) == 30

    def claim_all(_: int) -> list[int]:
        mine: list[int] = []
        while batch := auto_debit_claim(now=at(DUE, 9), limit=3):
            mine.extend(batch)
        return mine

    results = race(4, claim_all)
    claimed = [debit_id for batch in results for debit_id in batch]
    assert sorted(claimed) == sorted(ScheduledDebit.objects.values_list("pk", flat=True))
    assert len(claimed) == len(set(claimed)) == 30


def test_janitor_workers_share_the_due_queue_without_double_claims(make_loan) -> None:
    from repayments.services.janitor import janitor_claim

    when = at(DUE)
    attempts = [open_attempt(make_loan(), "100.00", when)[1] for _ in range(40)]
    results = race(4, lambda _: janitor_claim(now=when + timedelta(minutes=1), limit=15))
    claimed = [attempt_id for batch in results for attempt_id in batch]
    assert len(claimed) == len(set(claimed))  # nobody asks twice
    assert sorted(claimed) == sorted(a.pk for a in attempts)  # and nothing is left behind


def test_the_same_callback_processed_by_two_workers_applies_once(make_loan) -> None:
    from repayments.channels.base import TradeResult
    from repayments.models import InboundCallbackRecord
    from repayments.services.callbacks import callback_process

    payment, attempt = open_attempt(make_loan(), "8606.64", at(DUE))
    result = TradeResult(
        out_trade_no=attempt.out_trade_no,
        status=AttemptStatus.SUCCEEDED,
        amount=Decimal("8606.64"),
        accepted_at=at(DUE),
    )

    class Parsed:
        def parse_callback(self, callback: Any, *, now: Any) -> TradeResult:
            return result

    # Two copies of the notification (a duplicate), each handled by its own worker,
    # and each worker also handed the other's message (a redelivery).
    records = [
        InboundCallbackRecord.objects.create(
            channel=attempt.channel, body=b"n", headers={}, received_at=at(DUE)
        )
        for _ in range(2)
    ]
    results = race(
        4,
        lambda i: callback_process(
            record_id=records[i % 2].pk, now=at(DUE), channels=lambda _: cast(Any, Parsed())
        ),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    successes = payment.events.filter(
        kind=EventKind.STATE_CHANGE, to_status=PaymentStatus.SUCCEEDED
    ).count()
    assert successes == 1
    assert sum(a.amount for a in Allocation.objects.filter(payment=payment)) == Decimal("8606.64")
