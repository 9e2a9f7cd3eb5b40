"""Batched audit appends keep the chain whole and never record a change that rolled back."""

from datetime import date

import pytest
from django.db import IntegrityError, transaction
from django.db.transaction import TransactionManagementError

from repayments.models import AuditChainHead, AuditEntry
from repayments.services.audit import audit_append, audit_batch, audit_verify
from tests.conftest import at

pytestmark = pytest.mark.django_db

WHEN = at(date(2026, 3, 2))


def _append(name: str) -> AuditEntry:
    return audit_append(action="test.batch", object_type="thing", object_id=name, now=WHEN)


def _written() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("object_id", flat=True))


def test_a_batch_writes_its_entries_at_its_end_chained_after_the_head() -> None:
    _append("before")
    with transaction.atomic(), audit_batch():
        first, second = _append("a"), _append("b")
        assert _written() == ["before"]  # queued, not written yet
    assert _written() == ["before", "a", "b"]
    assert second.prev_hash == first.entry_hash
    assert AuditChainHead.objects.get().last_hash == second.entry_hash
    assert AuditChainHead.objects.get().entry_count == 3
    assert audit_verify() is None


def _failing_change() -> None:
    with transaction.atomic(), audit_batch():
        _append("lost")
        raise RuntimeError("the change failed")


def test_a_batch_that_raises_writes_nothing() -> None:
    with pytest.raises(RuntimeError):
        _failing_change()
    assert _written() == []
    assert audit_verify() is None


def test_an_entry_inside_a_savepoint_that_rolls_back_is_not_kept() -> None:
    with transaction.atomic(), audit_batch():
        _append("kept")
        try:
            with transaction.atomic():  # a savepoint the caller rolls back
                _append("rolled back")
                raise IntegrityError("a constraint said no")
        except IntegrityError:
            pass
        _append("also kept")
    assert _written() == ["kept", "also kept"]
    assert audit_verify() is None


def test_nested_batches_without_a_savepoint_share_one_write() -> None:
    with transaction.atomic(), audit_batch():
        _append("outer")
        with transaction.atomic(savepoint=False), audit_batch():
            _append("inner")
        assert _written() == []  # the outer batch writes both at its end
    assert _written() == ["outer", "inner"]
    assert audit_verify() is None


@pytest.mark.django_db(transaction=True)
def test_a_batch_needs_a_transaction() -> None:
    # Outside a transaction the entries could not commit with the change they record.
    with pytest.raises(TransactionManagementError), audit_batch():
        pass
