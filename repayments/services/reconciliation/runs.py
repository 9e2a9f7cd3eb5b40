"""A reconciliation run: fetch or take a statement, compare it, record the counts."""

from __future__ import annotations

import hashlib
import time as clock
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from repayments.channels.base import ChannelError, SettlementRecord
from repayments.models import Discrepancy, DiscrepancyStatus, ReconciliationRun
from repayments.services.reconciliation.statement import CHUNK_SIZE, SHANGHAI, Statement
from repayments.services.routing import ChannelFactory, default_channel

__all__ = ["SHANGHAI", "reconcile_channel_day", "reconcile_records", "statement_digest"]


def reconcile_channel_day(
    *, channel: str, day: date, now: datetime, channels: ChannelFactory = default_channel
) -> ReconciliationRun:
    """Fetch ``channel``'s statement for ``day`` and reconcile it with our books.

    A statement that cannot be fetched leaves a run with its ``error`` and the
    exception is re-raised, so a scheduled task retries (bills appear only
    late the next morning) and the command exits non-zero.

    :raises ChannelUnavailable: the statement is not there (yet) or not reachable.
    :raises ChannelError: the statement is malformed (the error names the line).
    """
    started = clock.monotonic()
    run = ReconciliationRun.objects.create(channel=channel, day=day, started_at=now)
    try:
        records = channels(channel).fetch_settlement_file(day)
    except Exception as exc:
        _fail(run, _describe(exc), now, started)
        raise
    return _reconcile(run=run, records=records, now=now, channels=channels, started=started)


def reconcile_records(
    *,
    channel: str,
    day: date,
    records: Sequence[SettlementRecord],
    now: datetime,
    channels: ChannelFactory = default_channel,
) -> ReconciliationRun:
    """Reconcile statement lines already read, and record the run.

    Lines paid at the channel but not confirmed here are repaired (the channel
    is queried first for the exact time it accepted the money); every other
    difference is recorded open for support. Re-running changes nothing.
    """
    started = clock.monotonic()
    run = ReconciliationRun.objects.create(channel=channel, day=day, started_at=now)
    return _reconcile(run=run, records=records, now=now, channels=channels, started=started)


def statement_digest(records: Iterable[SettlementRecord]) -> str:
    """SHA-256 over the lines' meaning, not their bytes: the same statement
    downloaded as a zip or a CSV, in GBK or UTF-8, has one digest."""
    digest = hashlib.sha256()
    days: dict[date, str] = {}
    batch: list[str] = []
    for r in records:
        amount = str(r.amount)
        if amount[-3:-2] != ".":  # not already in fen, e.g. Decimal("50")
            amount = f"{r.amount:.2f}"
        day = days.get(r.settled_on) or days.setdefault(r.settled_on, r.settled_on.isoformat())
        batch.append(f"{r.out_trade_no}\t{r.channel_trade_no}\t{amount}\t{r.kind}\t{day}\n")
        if len(batch) == CHUNK_SIZE:
            digest.update("".join(batch).encode())
            batch.clear()
    digest.update("".join(batch).encode())
    return digest.hexdigest()


def _reconcile(
    *,
    run: ReconciliationRun,
    records: Sequence[SettlementRecord],
    now: datetime,
    channels: ChannelFactory,
    started: float,
) -> ReconciliationRun:
    try:
        run.file_digest = statement_digest(records)
        Statement(run=run, records=records, now=now, channels=channels).reconcile()
        _count(run, records)
    except Exception as exc:
        _fail(run, _describe(exc), now, started)
        raise
    run.finished_at = now + timedelta(seconds=clock.monotonic() - started)
    run.save()
    return run


def _describe(exc: Exception) -> str:
    if isinstance(exc, ChannelError):
        return f"{exc.code}: {exc.message}" if exc.message else exc.code
    return f"{type(exc).__name__}: {exc}"


def _fail(run: ReconciliationRun, error: str, now: datetime, started: float) -> None:
    run.error = error[:2000]
    run.finished_at = now + timedelta(seconds=clock.monotonic() - started)
    run.save(update_fields=["error", "finished_at", "file_digest"])


def _count(run: ReconciliationRun, records: Sequence[SettlementRecord]) -> None:
    """Counts describe the statement day, so a re-import reports the same figures.

    ``repaired``: differences fixed automatically; ``discrepancies``: those that
    needed a person (open or since resolved); ``matched``: lines whose order has
    no difference on this statement.
    """
    rows = Discrepancy.objects.filter(channel=run.channel, day=run.day)
    found = list(rows.values_list("status", "out_trade_no"))
    flagged = {number for _, number in found}
    run.line_count = len(records)
    run.matched_count = sum(1 for r in records if r.out_trade_no not in flagged)
    run.repaired_count = sum(1 for status, _ in found if status == DiscrepancyStatus.REPAIRED)
    run.discrepancy_count = len(found) - run.repaired_count
