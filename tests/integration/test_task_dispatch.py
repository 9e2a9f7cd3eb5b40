"""Beat's dispatchers hand claimed rows to workers a chunk per task, and every claimed
row is worked once (tasks run eagerly here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from repayments import tasks
from repayments.models import DebitStatus, Loan, PaymentAttempt
from repayments.services import autodebit, janitor
from repayments.services.autodebit import auto_debit_schedule
from tests.conftest import at
from tests.integration.fake_channel import FakeChannels
from tests.integration.helpers import bind_debit_card, open_attempt

pytestmark = pytest.mark.django_db
DUE = date(2026, 2, 5)


def _recorded(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[list[int]]:
    """Call ``module.name`` as usual (with fake channels), recording each batch of ids."""
    batches: list[list[int]] = []
    original = getattr(module, name)
    fakes = FakeChannels()

    def recording(**kwargs: Any) -> Any:
        ids: list[int] = kwargs.get("debit_ids") or kwargs["attempt_ids"]
        batches.append(list(ids))
        return original(**kwargs, channels=fakes)

    monkeypatch.setattr(tasks, name, recording)
    return batches


def test_due_debits_go_out_a_chunk_per_task_and_each_once(
    make_loan: Callable[..., Loan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "DISPATCH_CHUNK", 2)
    batches = _recorded(monkeypatch, autodebit, "auto_debit_execute_many")
    for n in range(5):
        bind_debit_card(make_loan().borrower, f"tok_dispatch_{n}")
    assert auto_debit_schedule(run_date=DUE, now=at(DUE, 0)) == 5

    assert tasks.auto_debit_dispatch() == 5

    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert len({i for batch in batches for i in batch}) == 5
    statuses = set(autodebit.ScheduledDebit.objects.values_list("status", flat=True))
    assert statuses <= {DebitStatus.SUCCEEDED, DebitStatus.HANDED_OFF}
    assert tasks.auto_debit_dispatch() == 0  # nothing claimed twice


def test_due_status_queries_go_out_a_chunk_per_task(
    make_loan: Callable[..., Loan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "DISPATCH_CHUNK", 2)
    batches = _recorded(monkeypatch, janitor, "janitor_check_many")
    opened = [open_attempt(make_loan(), "100.00", at(DUE, 9))[1] for _ in range(3)]
    PaymentAttempt.objects.filter(pk__in=[a.pk for a in opened]).update(next_query_at=at(DUE, 9))

    assert tasks.janitor_dispatch() == 3

    assert [len(batch) for batch in batches] == [2, 1]
    assert sorted(i for batch in batches for i in batch) == sorted(a.pk for a in opened)
