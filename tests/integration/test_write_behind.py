"""Updates held back to the end of a batch: written once, together, and never when
the batch fails or a savepoint inside it rolls back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from repayments.models import CalendarDay, CalendarDayKind, Loan
from repayments.services.write_behind import (
    flush_deferred,
    insert_later,
    save_fields,
    updates_deferred,
)

pytestmark = pytest.mark.django_db


def _vehicle(loan: Loan) -> str:
    return Loan.objects.values_list("vehicle", flat=True).get(pk=loan.pk)


def test_queued_updates_are_written_together_when_the_block_ends(make_loan) -> None:
    loans = [make_loan() for _ in range(3)]
    with transaction.atomic(), updates_deferred():
        for n, loan in enumerate(loans):
            loan.vehicle = f"Vehicle {n}"
            save_fields(loan, ["vehicle"])
            loan.credit_balance = Decimal("1.00")
            save_fields(loan, ["credit_balance"])  # merged with the first for this row
        assert _vehicle(loans[0]) != "Vehicle 0"  # held back so far
    assert [_vehicle(loan) for loan in loans] == ["Vehicle 0", "Vehicle 1", "Vehicle 2"]
    assert {loan.credit_balance for loan in Loan.objects.filter(pk__in=[x.pk for x in loans])} == {
        Decimal("1.00")
    }


def test_one_statement_for_every_row_of_a_model(make_loan) -> None:
    loans = [make_loan() for _ in range(3)]
    with transaction.atomic(), CaptureQueriesContext(connection) as written, updates_deferred():
        for loan in loans:
            loan.vehicle = "Changed"
            save_fields(loan, ["vehicle"])
    updates = [q["sql"] for q in written.captured_queries if "UPDATE" in q["sql"]]
    assert len(updates) == 1
    if connection.vendor == "postgresql":  # one UPDATE ... FROM unnest(...) for all rows
        assert "unnest(" in updates[0]
        assert updates[0].count("Changed") == 3
    else:  # executemany: logged once, "3 times"
        assert updates[0].startswith("3 times")
    assert Loan.objects.filter(vehicle="Changed").count() == 3


def test_one_statement_writes_each_row_its_own_values_of_every_type(make_loan) -> None:
    loans = [make_loan() for _ in range(3)]
    other_day = loans[0].start_date.replace(day=1)
    with transaction.atomic(), updates_deferred():
        for n, loan in enumerate(loans):
            loan.vehicle = f"Car {n}"
            loan.credit_balance = Decimal(f"{n}.25")
            loan.settled_date = other_day if n == 1 else None
            save_fields(loan, ["vehicle", "credit_balance", "settled_date"])
    stored = {
        row["pk"]: row
        for row in Loan.objects.filter(pk__in=[x.pk for x in loans]).values(
            "pk", "vehicle", "credit_balance", "settled_date"
        )
    }
    assert [
        (
            stored[loan.pk]["vehicle"],
            stored[loan.pk]["credit_balance"],
            stored[loan.pk]["settled_date"],
        )
        for loan in loans
    ] == [
        ("Car 0", Decimal("0.25"), None),
        ("Car 1", Decimal("1.25"), other_day),
        ("Car 2", Decimal("2.25"), None),
    ]


def test_a_failed_block_writes_nothing(make_loan) -> None:
    loan = make_loan()
    before = _vehicle(loan)

    def failing_batch() -> None:
        with transaction.atomic(), updates_deferred():
            loan.vehicle = "Never written"
            save_fields(loan, ["vehicle"])
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert _vehicle(loan) == before


def test_inside_a_savepoint_the_write_is_immediate_and_rolls_back_with_it(make_loan) -> None:
    loan = make_loan()
    before = _vehicle(loan)
    with transaction.atomic(), updates_deferred():
        try:
            with transaction.atomic():
                loan.vehicle = "Rolled back"
                save_fields(loan, ["vehicle"])
                assert _vehicle(loan) == "Rolled back"  # written at once
                raise ValueError
        except ValueError:
            pass
        loan.vehicle = before
    assert _vehicle(loan) == before


def test_flush_writes_what_is_queued_before_a_read(make_loan) -> None:
    loan = make_loan()
    with transaction.atomic(), updates_deferred():
        loan.vehicle = "Read back"
        save_fields(loan, ["vehicle"])
        flush_deferred()
        assert _vehicle(loan) == "Read back"


def test_outside_a_block_it_is_a_plain_save(make_loan) -> None:
    loan = make_loan()
    loan.vehicle = "Saved now"
    save_fields(loan, ["vehicle"])
    assert _vehicle(loan) == "Saved now"


@pytest.mark.django_db(transaction=True)
def test_a_block_needs_a_transaction() -> None:
    with pytest.raises(TransactionManagementError), updates_deferred():
        pass


def test_new_rows_are_inserted_together_when_the_block_ends() -> None:
    days = [
        CalendarDay(day=date(2027, 10, n), kind=CalendarDayKind.HOLIDAY, name="National Day")
        for n in range(1, 4)
    ]
    with transaction.atomic():
        with CaptureQueriesContext(connection) as written, updates_deferred():
            insert_later(CalendarDay, days[:2])
            insert_later(CalendarDay, days[2:])
            assert not CalendarDay.objects.filter(name="National Day").exists()  # held back
        inserts = [q["sql"] for q in written.captured_queries if q["sql"].startswith("INSERT")]
        assert len(inserts) == 1
    assert all(day.pk is not None for day in days)
    assert CalendarDay.objects.filter(name="National Day").count() == 3


def test_a_second_copy_of_a_row_keeps_both_copies_changes(make_loan) -> None:
    loan = make_loan()
    copy = Loan.objects.get(pk=loan.pk)
    with transaction.atomic(), updates_deferred():
        loan.credit_balance = Decimal("5.00")
        save_fields(loan, ["credit_balance"])
        copy.vehicle = "From the copy"
        save_fields(copy, ["vehicle"])
    stored = Loan.objects.get(pk=loan.pk)
    assert stored.credit_balance == Decimal("5.00")
    assert stored.vehicle == "From the copy"


def test_flushing_inside_a_savepoint_of_the_block_is_refused(make_loan) -> None:
    """Its rollback would take the writes held before it along: they would be lost."""
    loan = make_loan()
    with transaction.atomic(), updates_deferred():
        loan.vehicle = "Held before the savepoint"
        save_fields(loan, ["vehicle"])
        with pytest.raises(TransactionManagementError), transaction.atomic():
            flush_deferred()
    assert _vehicle(loan) == "Held before the savepoint"
