"""Re-process stored callbacks, typically the quarantined ones after a parser fix."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from repayments.models import CallbackStatus
from repayments.services.callbacks import callbacks_replay


class Command(BaseCommand):
    help = "Replay stored channel callbacks through the current parser and state machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quarantined", action="store_true", help="replay every quarantined callback"
        )
        parser.add_argument("--held", action="store_true", help="replay callbacks held for review")
        parser.add_argument("--id", type=int, action="append", dest="ids", help="one row (repeat)")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses: list[str] = [CallbackStatus.QUARANTINED] if options["quarantined"] else []
        if options["held"]:
            statuses.append(CallbackStatus.HELD)
        ids = options["ids"]
        if not statuses and not ids:
            raise CommandError("say what to replay: --quarantined, --held or --id N")
        if ids and not statuses:
            statuses = list(CallbackStatus.values)
        outcomes = callbacks_replay(now=timezone.now(), statuses=statuses, ids=ids)
        if not outcomes:
            self.stdout.write("nothing to replay")
            return
        for status, count in sorted(outcomes.items()):
            self.stdout.write(f"{status}: {count}")
        if outcomes.get(CallbackStatus.QUARANTINED):
            raise CommandError("some callbacks are still not understood; they stay quarantined")
