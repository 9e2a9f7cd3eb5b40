"""Create the role groups and their permissions (safe to run on every deploy)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from repayments.services.users import roles_ensure


class Command(BaseCommand):
    help = "Create or update the borrower/support/admin role groups."

    def handle(self, *args: Any, **options: Any) -> None:
        roles_ensure()
        self.stdout.write(self.style.SUCCESS("roles up to date"))
