"""Appending to and verifying the hash-chained audit log (design rule 8)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

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
    with the change it records. The head row lock serialises appenders.
    """
    # Round-trip through JSON so the hash covers exactly what is stored.
    clean = json.loads(json.dumps(data or {}, default=str))
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(singleton=True)
        label = (actor.get_username() or str(actor)) if actor else SYSTEM_ACTOR
        fields = {
            "occurred_at": now,
            "actor_label": label,
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "data": clean,
        }
        digest = _entry_hash(prev_hash=head.last_hash, **fields)
        entry = AuditEntry.objects.create(
            actor=actor, prev_hash=head.last_hash, entry_hash=digest, **fields
        )
        head.last_entry_id, head.last_hash = entry.pk, digest
        head.entry_count += 1
        head.save(update_fields=["last_entry_id", "last_hash", "entry_count"])
    return entry


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
