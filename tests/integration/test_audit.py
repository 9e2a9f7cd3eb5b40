"""The hash-chained audit log detects any altered or removed entry (rule 8)."""

from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from repayments.models import AuditChainHead, AuditEntry
from repayments.services.audit import audit_append, audit_verify
from tests.conftest import at
from tests.integration.audit_tampering import audit_tampering

pytestmark = pytest.mark.django_db


def _chain(n: int = 5) -> list[AuditEntry]:
    return [
        audit_append(
            action="test.event",
            object_type="thing",
            object_id=i,
            now=at(date(2026, 1, 5)),
            data={"n": i, "amount": "1.00"},
        )
        for i in range(n)
    ]


def test_intact_chain_verifies(capsys) -> None:
    _chain()
    call_command("verify_audit_chain")
    assert "intact" in capsys.readouterr().out


def test_altered_entry_is_named() -> None:
    entries = _chain()
    with audit_tampering():
        AuditEntry.objects.filter(pk=entries[2].pk).update(data={"n": 2, "amount": "1000.00"})
    with pytest.raises(CommandError, match=f"entry {entries[2].pk}: content does not match"):
        call_command("verify_audit_chain")


def test_removed_entry_breaks_the_next_link() -> None:
    entries = _chain()
    with audit_tampering():
        AuditEntry.objects.filter(pk=entries[1].pk).delete()
    problem = audit_verify()
    assert problem is not None
    assert problem.entry_id == entries[2].pk


def test_removed_tail_is_caught_by_the_head() -> None:
    entries = _chain()
    with audit_tampering():
        AuditEntry.objects.filter(pk=entries[-1].pk).delete()
    problem = audit_verify()
    assert problem is not None
    assert "expects 5 entries but 4 remain" in problem.reason


def test_rehashed_forgery_still_fails_against_the_head() -> None:
    entries = _chain(3)
    # An attacker who rewrites the last entry and recomputes its hash still
    # leaves the chain head pointing at the old hash.
    last = entries[-1]
    with audit_tampering():
        AuditEntry.objects.filter(pk=last.pk).update(entry_hash="f" * 64)
    assert audit_verify() is not None
    assert AuditChainHead.objects.get().entry_count == 3


def test_changes_in_services_are_audited(make_loan) -> None:
    make_loan()
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"product.created", "borrower.registered", "loan.created"} <= actions
    assert audit_verify() is None
