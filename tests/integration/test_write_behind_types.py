"""update_rows on PostgreSQL (UPDATE ... FROM unnest) writes what row-by-row save() does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import DataError, connection, transaction

from repayments.models import Loan
from repayments.services.write_behind import save_fields, update_rows, updates_deferred
from tests.integration.helpers import open_attempt

pytestmark = pytest.mark.django_db


def test_a_too_long_value_is_refused_as_save_refuses_it(make_loan: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce a column's length")
    # save() (and the executemany this replaced) refuses a value longer than the column;
    # written together, it must be refused too, not stored cut short.
    loans = [make_loan() for _ in range(3)]
    loans[0].vehicle = "x" * 300  # Loan.vehicle is shorter than this
    with pytest.raises(DataError), transaction.atomic():
        loans[0].save(update_fields=["vehicle"])
    long = "V" * 300
    try:
        with transaction.atomic(), updates_deferred():
            for n, loan in enumerate(loans):
                loan.vehicle = long if n != 1 else "car 1"
                save_fields(loan, ["vehicle"])
    except DataError:
        return  # refused like save(): fine
    stored = [
        len(v)
        for v in Loan.objects.filter(pk__in=[x.pk for x in loans])
        .order_by("pk")
        .values_list("vehicle", flat=True)
    ]
    pytest.fail(f"written without an error, values of 300 characters stored as {stored}")


def test_every_kind_of_field_lands_as_save_would_write_it(make_loan: Any, now: Any) -> None:
    # JSON, binary, FK, nullable datetime/date/boolean, positive integer, text, choices;
    # the first row holds NULL wherever a column allows it (it types the VALUES list).
    from repayments.models import CallbackStatus, InboundCallbackRecord, Installment

    loan = make_loan()
    _, attempt = open_attempt(loan, "10.00", now)
    records = [
        InboundCallbackRecord.objects.create(channel="unionpay", body=b"x", received_at=now)
        for _ in range(3)
    ]
    wanted = [
        ({"a": [1, 2]}, b"\x00raw", None, "", 0, None, CallbackStatus.QUARANTINED),
        ({}, b"", attempt.pk, "boom\n'quoted'", 7, now, CallbackStatus.PROCESSED),
        ({"k": None}, b"\xff", None, "", 2**31 - 1, now, CallbackStatus.REJECTED),
    ]
    fields = ["headers", "body", "attempt", "error", "tries", "processed_at", "status"]
    for record, values in zip(records, wanted, strict=True):
        (
            record.headers,
            record.body,
            record.attempt_id,
            record.error,
            record.tries,
            record.processed_at,
            record.status,
        ) = values
    with transaction.atomic():
        update_rows(InboundCallbackRecord, records, fields)
    got = [
        (r.headers, bytes(r.body), r.attempt_id, r.error, r.tries, r.processed_at, r.status)
        for r in InboundCallbackRecord.objects.filter(pk__in=[r.pk for r in records]).order_by("pk")
    ]
    assert got == wanted

    items = list(Installment.objects.filter(loan=loan).order_by("number")[:3])
    day = items[0].due_date
    plan = [
        (None, None, None, Decimal("0.00")),
        (day, True, day, Decimal("1.23")),
        (day, False, None, Decimal("99999999.99")),
    ]
    for item, (paid, on_time, through, penalty) in zip(items, plan, strict=True):
        item.paid_value_date, item.paid_on_time = paid, on_time
        item.penalty_accrued_through, item.penalty_paid = through, penalty
        item.penalty_due = penalty
    with transaction.atomic():
        update_rows(
            Installment,
            items,
            [
                "paid_value_date",
                "paid_on_time",
                "penalty_accrued_through",
                "penalty_paid",
                "penalty_due",
            ],
        )
    stored = [
        (i.paid_value_date, i.paid_on_time, i.penalty_accrued_through, i.penalty_paid)
        for i in Installment.objects.filter(pk__in=[i.pk for i in items]).order_by("number")
    ]
    assert stored == plan


def test_each_row_written_together_gets_a_larger_record_token(make_loan: Any) -> None:
    loans = [make_loan() for _ in range(3)]
    before = dict(
        Loan.objects.filter(pk__in=[x.pk for x in loans]).values_list("pk", "record_token")
    )
    for n, loan in enumerate(loans):
        loan.vehicle = f"Car {n}"
    with transaction.atomic():
        update_rows(Loan, loans, ["vehicle"])
    after = dict(
        Loan.objects.filter(pk__in=[x.pk for x in loans]).values_list("pk", "record_token")
    )
    assert all(after[pk] > before[pk] for pk in before), (before, after)


def test_a_column_null_in_every_row_is_written(make_loan: Any, now: Any) -> None:
    # A column whose values are all NULL gives the driver nothing to infer a type from.
    from repayments.models import CallbackStatus, InboundCallbackRecord, Installment

    loan = make_loan()
    _, attempt = open_attempt(loan, "10.00", now)
    records = [
        InboundCallbackRecord.objects.create(
            channel="unionpay", body=b"x", received_at=now, attempt=attempt, processed_at=now
        )
        for _ in range(3)
    ]
    for record in records:
        record.attempt_id, record.processed_at = None, None
        record.status = CallbackStatus.PROCESSED
    with transaction.atomic():
        update_rows(InboundCallbackRecord, records, ["attempt", "processed_at", "status"])
    stored = InboundCallbackRecord.objects.filter(pk__in=[r.pk for r in records])
    assert set(stored.values_list("attempt_id", "processed_at", "status")) == {
        (None, None, CallbackStatus.PROCESSED)
    }
    items = list(Installment.objects.filter(loan=loan).order_by("number")[:3])
    for item in items:
        item.paid_on_time, item.paid_value_date = None, None
    with transaction.atomic():
        update_rows(Installment, items, ["paid_on_time", "paid_value_date"])
    assert set(
        Installment.objects.filter(pk__in=[i.pk for i in items]).values_list(
            "paid_on_time", "paid_value_date"
        )
    ) == {(None, None)}
