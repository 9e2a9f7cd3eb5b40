"""Reconcile channels' settlement statements for one day; exit non-zero if any failed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from repayments.channels.base import ChannelError
from repayments.models import Channel, Discrepancy, ReconciliationRun
from repayments.services.reconciliation import SHANGHAI, reconcile_channel_day

ALL = "all"


class Command(BaseCommand):
    help = (
        "Fetch each channel's settlement statement for a day and compare it with our books: "
        "repair payments the channel settled but we never confirmed, record every other "
        "difference for support. Safe to re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--channel",
            default=ALL,
            help=f"one of {', '.join(Channel.values)}, or {ALL} (default)",
        )
        parser.add_argument(
            "--date", dest="day", help="statement day YYYY-MM-DD (default: yesterday, Beijing)"
        )

    def handle(self, *args: Any, channel: str, day: str | None, **options: Any) -> None:
        now = timezone.now()
        names = _channels(channel)
        statement_day = _day(day, now)
        failed = []
        for name in names:
            try:
                run = reconcile_channel_day(channel=name, day=statement_day, now=now)
            except ChannelError as exc:
                failed.append(name)
                self.stderr.write(
                    _("%(channel)s %(day)s: statement not reconciled: %(error)s")
                    % {"channel": name, "day": statement_day, "error": exc}
                )
                continue
            self.stdout.write(_summary(run))
        if failed:
            raise CommandError(
                _("statement not reconciled for %(channels)s; run again once it is available")
                % {"channels": ", ".join(failed)}
            )


def _channels(value: str) -> list[str]:
    if value == ALL:
        return list(Channel.values)
    if value not in Channel.values:
        raise CommandError(
            _("Unknown channel %(channel)r: use one of %(choices)s or %(all)s.")
            % {"channel": value, "choices": ", ".join(Channel.values), "all": ALL}
        )
    return [value]


def _day(value: str | None, now: datetime) -> date:
    today = now.astimezone(SHANGHAI).date()
    if value is None:
        return today - timedelta(days=1)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CommandError(
            _("Invalid date %(value)r: give the statement day as YYYY-MM-DD.") % {"value": value}
        ) from None
    if day > today:
        raise CommandError(
            _("No statement exists for %(day)s: that day has not begun.") % {"day": day}
        )
    return day


def _summary(run: ReconciliationRun) -> str:
    rows = Discrepancy.objects.filter(channel=run.channel, day=run.day)
    by_kind = rows.values_list("kind", "status").annotate(n=Count("id")).order_by("kind", "status")
    kinds = ", ".join(f"{kind} {status} {n}" for kind, status, n in by_kind) or "-"
    return _(
        "%(channel)s %(day)s: %(lines)d lines, %(matched)d matched, %(repaired)d repaired, "
        "%(discrepancies)d discrepancies (by kind: %(kinds)s) digest %(digest)s"
    ) % {
        "channel": run.channel,
        "day": run.day,
        "lines": run.line_count,
        "matched": run.matched_count,
        "repaired": run.repaired_count,
        "discrepancies": run.discrepancy_count,
        "kinds": kinds,
        "digest": run.file_digest[:12],
    }
