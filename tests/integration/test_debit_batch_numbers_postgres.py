"""Batch numbers taken by several due-day workers at once (PostgreSQL, READ COMMITTED)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.db import connection

from repayments.models import DebitBatch, PaymentAttempt
from repayments.services.routing import _debit_batch_open
from tests.conftest import at
from tests.integration.helpers import open_attempt
from tests.integration.test_concurrency_postgres import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NINE = at(date(2026, 2, 5), 9)


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_workers_starting_together_each_get_a_batch_number(make_loan: Any, workers: int) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL")
    # Each worker holds the two attempts it opened at nine and takes a number for them.
    parts = []
    for _ in range(workers):
        pair = []
        for _ in range(2):
            _, attempt = open_attempt(make_loan(), "10.00", NINE)
            pair.append((attempt, "tok"))
        parts.append(pair)

    results = race(workers, lambda n: _debit_batch_open("unionpay", NINE, parts[n]))

    assert not [r for r in results if isinstance(r, Exception)]
    lost = [n for n, r in enumerate(results) if r is None]
    assert not lost, f"{len(lost)} of {workers} workers got no number and sent one by one"
    assert sorted(r.batch_no for r in results) == [f"{n:04d}" for n in range(1, workers + 1)]
    assert DebitBatch.objects.count() == workers
    for batch, part in zip(results, parts, strict=True):
        linked = PaymentAttempt.objects.filter(debit_batch=batch).values_list("pk", flat=True)
        assert sorted(linked) == sorted(a.pk for a, _ in part)
