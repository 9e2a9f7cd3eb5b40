"""Writing a payment's append-only timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from repayments.models import EventKind, Payment, PaymentAttempt, PaymentEvent


def timeline_event(
    *,
    payment: Payment,
    kind: EventKind,
    summary: str,
    now: datetime,
    attempt: PaymentAttempt | None = None,
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
) -> PaymentEvent:
    """One timeline event, unsaved: a state change writes all of its events in one INSERT."""
    return PaymentEvent(
        payment=payment,
        attempt=attempt,
        kind=kind,
        summary=summary[:200],
        from_status=from_status,
        to_status=to_status,
        data=data or {},
        occurred_at=now,
    )


def timeline_record(
    *,
    payment: Payment,
    kind: EventKind,
    summary: str,
    now: datetime,
    attempt: PaymentAttempt | None = None,
    from_status: str = "",
    to_status: str = "",
    data: dict[str, Any] | None = None,
) -> PaymentEvent:
    """Append one event to the payment's timeline (inside the caller's transaction)."""
    event = timeline_event(
        payment=payment,
        kind=kind,
        summary=summary,
        now=now,
        attempt=attempt,
        from_status=from_status,
        to_status=to_status,
        data=data,
    )
    event.save(force_insert=True)
    return event
