"""Appending to and verifying the hash-chained audit log (design rule 8).

Every entry carries the hash of the one before it, so the chain is written one
transaction at a time: an appender locks the chain head row until it commits.
On the payment hot path that lock was the bottleneck, held from the first
state change to the commit. :func:`audit_batch` shortens it: the block's
entries are queued and chained together at the block's end, so the head is
locked only for the last few statements of the transaction, and two entries
cost three statements instead of eight. The chain it writes is the same:
append-only, one link per entry, verified by :func:`audit_verify`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.transaction import TransactionManagementError

from repayments.models import AuditChainHead, AuditEntry, User
from repayments.models.audit import GENESIS_HASH

SYSTEM_ACTOR = "system"


def _entry_hash(
    *,
    prev_hash: str,
    occurred_at: datetime,
    actor_label: str,
    action: str,
    object_type: str,
    object_id: str,
    data: dict[str, Any],
) -> str:
    payload = json.dumps(
        [
            prev_hash,
            occurred_at.astimezone(UTC).isoformat(),
            actor_label,
            action,
            object_type,
            object_id,
            data,
        ],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class _Batch:
    """Entries queued by one :func:`audit_batch` block, and where in the
    transaction's savepoint stack the block began."""

    savepoints: list[str | None]
    pending: list[AuditEntry] = field(default_factory=list)


_local = threading.local()


def _batches() -> list[_Batch]:
    stack: list[_Batch] | None = getattr(_local, "batches", None)
    if stack is None:
        stack = _local.batches = []
    return stack


def _savepoints() -> list[str | None]:
    return list(transaction.get_connection().savepoint_ids)


def _open_batch() -> _Batch | None:
    """The innermost batch whose fate a new entry shares.

    An entry may join a batch only if no savepoint was opened since the batch
    began: a savepoint rolled back after the entry was queued would otherwise
    leave the entry to be written for a change that never happened. Blocks
    opened with ``savepoint=False`` (None on the stack) are fine: an error in
    them dooms the whole transaction.
    """
    stack = _batches()
    if not stack:
        return None
    batch, now_ids = stack[-1], _savepoints()
    depth = len(batch.savepoints)
    if now_ids[:depth] != batch.savepoints or any(sid is not None for sid in now_ids[depth:]):
        return None
    return batch


@contextmanager
def audit_batch() -> Iterator[None]:
    """Queue the block's audit entries and chain them in one go when it ends.

    Use inside the transaction the entries belong to, as late as possible in it:
    ``with transaction.atomic(), audit_batch():``. The chain head is locked only
    from the block's end to the commit. If the block raises, its queued entries
    are dropped with the rest of its work. Nested blocks join the outer batch
    unless a savepoint separates them.

    :raises TransactionManagementError: outside a transaction (the entries
        would not commit with the change they record).
    """
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("audit_batch() needs an open transaction")
    if _open_batch() is not None:
        yield  # joins the enclosing batch, which writes the entries
        return
    stack = _batches()
    batch = _Batch(savepoints=_savepoints())
    stack.append(batch)
    try:
        yield
    finally:
        stack.remove(batch)
    # Only reached without an exception: the block's work stands, so do its entries.
    _write_chained(batch.pending)


def audit_append(
    *,
    action: str,
    object_type: str,
    object_id: object,
    now: datetime,
    actor: User | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry, chained to the previous one.

    Runs inside the caller's transaction, so the entry commits or rolls back
    with the change it records. Inside :func:`audit_batch` the entry is queued
    and written (and given its id and hash) when the batch ends; otherwise it
    is written now, and the head row lock serialises appenders.
    """
    # Round-trip through JSON so the hash covers exactly what is stored.
    clean = json.loads(json.dumps(data or {}, default=str))
    label = (actor.get_username() or str(actor)) if actor else SYSTEM_ACTOR
    entry = AuditEntry(
        occurred_at=now,
        actor=actor,
        actor_label=label,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        data=clean,
    )
    batch = _open_batch()
    if batch is not None:
        batch.pending.append(entry)
    else:
        with transaction.atomic():
            _write_chained([entry])
    return entry


def _write_chained(entries: list[AuditEntry]) -> None:
    """Chain ``entries`` after the head and write them (caller's transaction)."""
    if not entries:
        return
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(singleton=True)
    prev = head.last_hash
    for entry in entries:
        entry.prev_hash = prev
        entry.entry_hash = prev = _entry_hash(
            prev_hash=prev,
            occurred_at=entry.occurred_at,
            actor_label=entry.actor_label,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            data=entry.data,
        )
    if len(entries) == 1:
        entries[0].save(force_insert=True)
    else:
        AuditEntry.objects.bulk_create(entries)
    head.last_entry_id, head.last_hash = entries[-1].pk, prev
    head.entry_count += len(entries)
    head.save(update_fields=["last_entry_id", "last_hash", "entry_count"])


@dataclass(frozen=True)
class ChainProblem:
    entry_id: int | None
    reason: str


def audit_verify() -> ChainProblem | None:
    """Return the first break in the chain, or None when it is intact."""
    expected_prev = GENESIS_HASH
    count = 0
    last_id: int | None = None
    for entry in _entries_in_order():
        if entry.prev_hash != expected_prev:
            return ChainProblem(entry.pk, "link to the previous entry is broken (one was removed)")
        recomputed = _entry_hash(
            prev_hash=entry.prev_hash,
            occurred_at=entry.occurred_at,
            actor_label=entry.actor_label,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            data=entry.data,
        )
        if recomputed != entry.entry_hash:
            return ChainProblem(entry.pk, "content does not match its hash (the entry was altered)")
        expected_prev, last_id, count = entry.entry_hash, entry.pk, count + 1
    head = AuditChainHead.objects.filter(singleton=True).first()
    head_hash = head.last_hash if head else GENESIS_HASH
    head_count = head.entry_count if head else 0
    if head_hash != expected_prev or head_count != count:
        return ChainProblem(
            last_id, f"the chain head expects {head_count} entries but {count} remain"
        )
    return None


def _entries_in_order() -> Iterator[AuditEntry]:
    return AuditEntry.objects.order_by("id").iterator(chunk_size=2000)
