"""Load the demo borrowers, staff and loan history (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from repayments.services.demo import demo_seed


class Command(BaseCommand):
    help = "Create demo borrowers (13800138000-2), staff (agent, supervisor, admin) and history."

    def handle(self, *args: Any, **options: Any) -> None:
        created = demo_seed(now=timezone.now())
        if created:
            self.stdout.write(self.style.SUCCESS(f"created: {', '.join(created)}"))
        else:
            self.stdout.write("demo data already present; nothing changed")
