"""Writing a payment's append-only timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from repayments.models import EventKind, Payment, PaymentAttempt, PaymentEvent


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
    return PaymentEvent.objects.create(
        payment=payment,
        attempt=attempt,
        kind=kind,
        summary=summary[:200],
        from_status=from_status,
        to_status=to_status,
        data=data or {},
        occurred_at=now,
    )
