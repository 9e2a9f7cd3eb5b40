"""A privileged path for tests that play the attacker against the audit log.

On PostgreSQL a trigger refuses UPDATE and DELETE on audit entries; a test that
simulates tampering switches it off the way only the table's owner could, inside
the test's transaction, and switches it back on afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

APPEND_ONLY_TRIGGER = "repayments_auditentry_append_only"


@contextmanager
def audit_tampering() -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    _alter_trigger("DISABLE")
    try:
        yield
    finally:
        _alter_trigger("ENABLE")


def _alter_trigger(how: str) -> None:
    with connection.cursor() as cursor:
        # ALTER TABLE refuses while deferred foreign-key checks are pending: run them now,
        # then defer again as Django's test transaction expects.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE repayments_auditentry {how} TRIGGER {APPEND_ONLY_TRIGGER}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
