"""Daily settlement reconciliation: compare a channel's statement with our books (seed 004).

The statement is the channel's record of money it will pay out to us, so it is
where a payment we never confirmed, a payment we think succeeded that the
channel does not know, or a different amount finally shows.

Shape, chosen so a million-line statement takes seconds, not hours:

* Lines are matched in memory against attempts loaded by ``out_trade_no``
  (whatever day they were created, so an order placed the day before and
  settled today is found): on PostgreSQL the numbers are COPied into a
  temporary table and joined once, elsewhere looked up in chunks on the
  unique index. Lines are never stored as rows.
* The database is written only for differences. Open ones are bulk-inserted;
  each repair is one transaction holding the booking (through
  :func:`channel_result_apply`, the one path by which a channel report changes
  our books) *and* its ``Discrepancy`` row.
* Re-importing is idempotent by construction: a repaired attempt is confirmed
  and no longer differs; an open difference already exists and its unique key
  ``(channel, day, kind, out_trade_no)`` swallows the copy; and because a
  repair commits together with its row, a second, concurrent import of the
  same statement collides on that key and rolls its copy back, timeline
  event included. No advisory lock is needed, and none could be held here:
  repairs ask the channel first, and network calls never run inside a
  database transaction.
* Run counts are read back from the statement day's ``Discrepancy`` rows, so
  reading the same file again reports the same figures.
"""

from repayments.services.reconciliation.runs import (
    SHANGHAI,
    reconcile_channel_day,
    reconcile_records,
    statement_digest,
)
from repayments.services.reconciliation.statement import Finding

__all__ = [
    "SHANGHAI",
    "Finding",
    "reconcile_channel_day",
    "reconcile_records",
    "statement_digest",
]
