"""The record stamp: the cached record page is stored under it, so every write to a
borrower's payments, attempts, loans or cards must move it, however it is written.

Runs on SQLite and on PostgreSQL (CI runs the suite on both): the tokens are kept by
triggers written per database (migration 0015). A later migration that rebuilds one
of these tables on SQLite drops its triggers; these tests fail if that happens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from repayments.domain.states import AttemptStatus
from repayments.models import BoundCard, Loan, Payment, PaymentAttempt, User
from repayments.selectors import record_stamp
from tests.conftest import at
from tests.integration.helpers import bind_debit_card, open_attempt, pay, report

pytestmark = pytest.mark.django_db
T0 = at(date(2026, 2, 5), 10)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def borrower(make_borrower) -> User:
    return make_borrower()


@pytest.fixture
def loan(make_loan, borrower) -> Loan:
    return make_loan(borrower=borrower, start_date=timezone.localdate() - timedelta(days=20))


def _moves(borrower: User, write: Callable[[], object]) -> bool:
    before = record_stamp(borrower=borrower)
    write()
    return record_stamp(borrower=borrower) != before


def test_a_raw_update_of_each_table_moves_the_stamp(borrower, loan) -> None:
    payment, attempt = open_attempt(loan, "100.00", T0)
    card = bind_debit_card(borrower, "tok_stamp01")
    writes = {
        "payment": lambda: Payment.objects.filter(pk=payment.pk).update(amount=Decimal("99")),
        "attempt": lambda: PaymentAttempt.objects.filter(pk=attempt.pk).update(
            failure_message="changed"
        ),
        "loan": lambda: Loan.objects.filter(pk=loan.pk).update(vehicle="Renamed"),
        "card": lambda: BoundCard.objects.filter(pk=card.pk).update(bank_name="中国银行"),
    }
    for table, write in writes.items():
        assert _moves(borrower, write), table


def test_a_save_that_changes_nothing_still_moves_the_stamp(borrower, loan) -> None:
    """An update is seen whatever it changed: the stamp never has to know which column
    the page shows."""
    payment, _attempt = open_attempt(loan, "100.00", T0)
    assert _moves(borrower, payment.save)
    assert _moves(borrower, payment.save)  # the in-memory token is stale; still moves


def test_inserts_move_the_stamp(borrower, loan) -> None:
    assert _moves(borrower, lambda: open_attempt(loan, "100.00", T0))
    assert _moves(borrower, lambda: bind_debit_card(borrower, "tok_stamp01"))


def test_every_delete_is_counted(borrower, loan) -> None:
    """A delete, an insert and an update together could leave a count and a sum where
    they were; the deletion count cannot stay."""
    card = bind_debit_card(borrower, "tok_stamp01")

    def deletions() -> str:
        return record_stamp(borrower=borrower).rsplit("/", 1)[1]

    before = deletions()
    assert _moves(borrower, lambda: BoundCard.objects.filter(pk=card.pk).delete())
    assert deletions() != before


def test_another_borrowers_writes_leave_the_stamp_alone(borrower, loan, make_borrower, make_loan):
    other = make_borrower()
    other_loan = make_loan(borrower=other)
    pay(loan, "100.00", T0)
    assert not _moves(borrower, lambda: pay(other_loan, "50.00", T0))
    assert not _moves(borrower, lambda: bind_debit_card(other, "tok_stamp02"))


def test_a_state_change_through_the_services_moves_the_stamp(borrower, loan) -> None:
    _payment, attempt = open_attempt(loan, "100.00", T0)
    assert _moves(borrower, lambda: report(attempt, AttemptStatus.SUCCEEDED, T0))


def test_a_raw_update_shows_on_the_cached_page(client, borrower, loan, page_renders) -> None:
    payment, attempt = open_attempt(loan, "100.00", T0)
    report(attempt, AttemptStatus.FAILED, T0 + timedelta(minutes=1))
    client.force_login(borrower)
    english = {"HTTP_ACCEPT_LANGUAGE": "en"}
    assert "100.00" in client.get(reverse("record"), **english).content.decode()
    assert "100.00" in client.get(reverse("record"), **english).content.decode()
    assert len(page_renders) == 1  # the second visit was served from the cache

    Payment.objects.filter(pk=payment.pk).update(amount=Decimal("123.45"))
    assert "123.45" in client.get(reverse("record"), **english).content.decode()
    assert len(page_renders) == 2


def test_the_stamp_is_read_before_the_rows_and_a_hit_reads_nothing_else(
    client, borrower, loan
) -> None:
    """Read after the rows, a change committed in between would be stored under the new
    stamp with the old rows: a stale page served until the next change."""
    pay(loan, "100.00", T0)
    bind_debit_card(borrower, "tok_stamp01")
    client.force_login(borrower)
    with CaptureQueriesContext(connection) as miss:
        client.get(reverse("record"))
    statements = [query["sql"] for query in miss.captured_queries]
    stamp_at = next(i for i, sql in enumerate(statements) if "repayments_record_clock" in sql)
    for table in ("payment", "paymentattempt", "loan", "boundcard"):
        reads = [i for i, sql in enumerate(statements) if f'FROM "repayments_{table}"' in sql]
        assert reads, table
        assert min(reads) > stamp_at, table

    with CaptureQueriesContext(connection) as hit:
        client.get(reverse("record"))
    tables = " ".join(query["sql"] for query in hit.captured_queries)
    assert "repayments_record_clock" in tables
    assert 'FROM "repayments_payment"' not in tables
    assert len(hit.captured_queries) <= 3  # session, user, stamp


def test_repeated_parameters_are_shown_but_not_cached(client, borrower, loan, page_renders):
    pay(loan, "100.00", T0)
    client.force_login(borrower)
    for _ in range(2):
        assert client.get(reverse("record") + "?page=1&page=1").status_code == 200
    assert page_renders == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_commits_out_of_token_order_still_move_the_stamp(borrower, loan) -> None:
    """Two writers: the one that took the smaller token commits last. A reader between
    the two commits sees the larger token only; the late commit must still move the
    stamp (it would not if the stamp kept the largest token instead of the sum)."""
    first = pay(loan, "100.00", T0)
    second = pay(loan, "50.00", T0)
    updated, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                Payment.objects.filter(pk=first.pk).update(amount=Decimal("101"))
                updated.set()
                release.wait(10)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            updated.set()
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert updated.wait(10)
    Payment.objects.filter(pk=second.pk).update(amount=Decimal("51"))  # larger token, commits
    between = record_stamp(borrower=borrower)
    release.set()
    writer.join(10)
    assert not failures
    assert record_stamp(borrower=borrower) != between
