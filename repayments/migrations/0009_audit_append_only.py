"""The database itself refuses to change or remove an audit entry (PostgreSQL).

The hash chain detects tampering after the fact; this trigger stops it at the
source for anyone going through the application's connection, ORM or raw SQL.
Only someone able to alter the table (its owner, a migration, a test that
simulates an attacker) can switch it off, and the chain still catches them.
TRUNCATE is left to table privileges: test flushes use it, and production should
revoke TRUNCATE from the application role (docs/operations.md).
"""

from django.db import migrations

FUNCTION = "repayments_audit_append_only"
TRIGGER = "repayments_auditentry_append_only"

CREATE = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % of entry % refused', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER {TRIGGER}
    BEFORE UPDATE OR DELETE ON repayments_auditentry
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION}();
"""

DROP = f"""
DROP TRIGGER IF EXISTS {TRIGGER} ON repayments_auditentry;
DROP FUNCTION IF EXISTS {FUNCTION}();
"""


def _on_postgresql(sql: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("repayments", "0008_dispute_cases"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
