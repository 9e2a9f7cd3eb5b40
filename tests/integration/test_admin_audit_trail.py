"""The audit trail cannot be edited from the admin or the database, and any tampering
(a changed field, a removed, inserted or reordered entry) is found and named."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.core.management import execute_from_command_line
from django.db import DatabaseError, connection, transaction
from django.test import Client

from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import AuditEntry, EventKind
from repayments.services.audit import _entry_hash, audit_append, audit_verify
from tests.conftest import at
from tests.integration.audit_tampering import audit_tampering
from tests.integration.helpers import open_attempt, report

pytestmark = pytest.mark.django_db

WHEN = at(date(2026, 1, 5))


def _chain(n: int = 5) -> list[AuditEntry]:
    return [
        audit_append(action="test.event", object_type="thing", object_id=i, now=WHEN, data={"n": i})
        for i in range(n)
    ]


def _verify_exit(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``manage.py verify_audit_chain`` as the shell would; return exit code and stderr."""
    try:
        execute_from_command_line(["manage.py", "verify_audit_chain"])
    except SystemExit as exit_:
        return int(exit_.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_command_exits_zero_on_an_intact_chain(capsys: pytest.CaptureFixture[str]) -> None:
    _chain()
    assert _verify_exit(capsys) == (0, "")


def test_changed_actor_exits_non_zero_naming_the_entry(capsys: pytest.CaptureFixture[str]) -> None:
    entries = _chain()
    with audit_tampering():
        AuditEntry.objects.filter(pk=entries[3].pk).update(actor_label="someone-else")
    code, err = _verify_exit(capsys)
    assert code == 1
    assert f"entry {entries[3].pk}: content does not match" in err


def test_deleted_entry_exits_non_zero_naming_the_next_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = _chain()
    with audit_tampering():
        AuditEntry.objects.filter(pk=entries[2].pk).delete()
    code, err = _verify_exit(capsys)
    assert code == 1
    assert f"entry {entries[3].pk}: link to the previous entry is broken" in err


def _forge(*, pk: int, prev_hash: str) -> AuditEntry:
    """An entry hashed exactly as the service would, by someone who knows the scheme."""
    fields: dict[str, Any] = {
        "occurred_at": WHEN,
        "actor_label": "system",
        "action": "payment.succeeded",
        "object_type": "payment",
        "object_id": "999",
        "data": {"amount": "50000.00"},
    }
    digest = _entry_hash(prev_hash=prev_hash, **fields)
    return AuditEntry.objects.create(pk=pk, prev_hash=prev_hash, entry_hash=digest, **fields)


def test_entry_inserted_in_the_middle_is_found() -> None:
    entries = _chain()
    with audit_tampering():
        # Make room after entry 1, then slip a correctly hashed forgery into the gap.
        for entry in reversed(entries[2:]):
            AuditEntry.objects.filter(pk=entry.pk).update(id=entry.pk + 1000)
        _forge(pk=entries[2].pk, prev_hash=entries[1].entry_hash)
    problem = audit_verify()
    assert problem is not None
    assert problem.entry_id == entries[2].pk + 1000
    assert "link to the previous entry is broken" in problem.reason


def test_entry_appended_without_the_service_is_found() -> None:
    entries = _chain(3)
    _forge(pk=entries[-1].pk + 1, prev_hash=entries[-1].entry_hash)
    problem = audit_verify()
    assert problem is not None
    assert "expects 3 entries but 4 remain" in problem.reason


def test_reordered_entries_are_found(capsys: pytest.CaptureFixture[str]) -> None:
    entries = _chain()
    first, second = entries[1], entries[2]
    with audit_tampering():
        AuditEntry.objects.filter(pk=first.pk).update(id=-1)
        AuditEntry.objects.filter(pk=second.pk).update(id=first.pk)
        AuditEntry.objects.filter(pk=-1).update(id=second.pk)
    code, err = _verify_exit(capsys)
    assert code == 1
    assert f"entry {first.pk}: link to the previous entry is broken" in err


@pytest.mark.postgres
def test_database_refuses_update_and_delete_of_audit_entries() -> None:
    entry = _chain(2)[0]
    for attempt in (
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(action="forged"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE repayments_auditentry SET data = '{}' WHERE id = %s", [entry.pk])
    entry.refresh_from_db()
    assert entry.action == "test.event"
    assert audit_verify() is None


def test_superuser_cannot_change_or_delete_an_entry_in_admin(admin_client: Client) -> None:
    entry = _chain(2)[0]
    base = f"/admin/repayments/auditentry/{entry.pk}"
    changed = admin_client.post(f"{base}/change/", {"action": "forged"})
    deleted = admin_client.post(f"{base}/delete/", {"post": "yes"})
    added = admin_client.post("/admin/repayments/auditentry/add/", {"action": "forged"})
    bulk = admin_client.post(
        "/admin/repayments/auditentry/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert (changed.status_code, deleted.status_code, added.status_code) == (403, 403, 403)
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.action == "test.event"
    assert AuditEntry.objects.count() == 2
    assert audit_verify() is None


def test_every_payment_state_change_lands_in_the_chain(make_loan: Any) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", WHEN)
    report(attempt, AttemptStatus.FAILED, WHEN)
    # A late success after the failure: the money arrived (rule 2).
    report(attempt, AttemptStatus.SUCCEEDED, WHEN + timedelta(minutes=5))
    payment.refresh_from_db()

    moves = list(
        AuditEntry.objects.filter(object_type="payment", object_id=str(payment.public_id))
        .order_by("id")
        .values_list("action", "data")
    )
    changes = [(action, data.get("from")) for action, data in moves if data.get("from")]
    events = list(
        payment.events.filter(kind=EventKind.STATE_CHANGE)
        .order_by("id")
        .values_list("to_status", "from_status")
    )
    assert payment.status == PaymentStatus.SUCCEEDED
    assert [(f"payment.{to}", before) for to, before in events] == changes
    assert len(changes) >= 3  # processing, failed, succeeded
    assert audit_verify() is None
