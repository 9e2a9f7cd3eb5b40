"""Check the audit log's hash chain; exit 1 and name the first bad entry on tampering."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from repayments.services.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the hash-chained audit log. Exits non-zero if any entry was altered or removed."

    def handle(self, *args: Any, **options: Any) -> None:
        problem = audit_verify()
        if problem:
            raise CommandError(f"audit chain broken at entry {problem.entry_id}: {problem.reason}")
        self.stdout.write(self.style.SUCCESS("audit chain intact"))
