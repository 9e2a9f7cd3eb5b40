"""Payment and attempt state machines: every legal transition, in one place.

A payment is the borrower's intent to repay an amount; an attempt is one try
through one channel, with its own merchant order number. Rule 2 of the design
(confirmed state never regresses) is encoded here: nothing leaves
``succeeded`` except a refund, while a late success may rescue a ``failed``
payment or a ``closed`` attempt because the money did arrive.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from repayments.domain.errors import DomainError

S = TypeVar("S", bound=StrEnum)


class PaymentStatus(StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class AttemptStatus(StrEnum):
    SUBMITTING = "submitting"
    PENDING = "pending"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class IllegalTransition(DomainError):
    """This status change is not allowed."""

    code = "illegal_transition"


PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.CREATED: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.CANCELLED, PaymentStatus.FAILED}
    ),
    PaymentStatus.PROCESSING: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELLED}
    ),
    # Late success: the channel confirms money we had given up on.
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING}),
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.SUCCEEDED}),
    # Only the refund service may take this edge (see payment_record_refund).
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.SUBMITTING: frozenset(
        {
            AttemptStatus.PENDING,
            AttemptStatus.UNKNOWN,
            AttemptStatus.SUCCEEDED,
            AttemptStatus.FAILED,
            AttemptStatus.CLOSED,
        }
    ),
    AttemptStatus.PENDING: frozenset(
        {
            AttemptStatus.UNKNOWN,
            AttemptStatus.SUCCEEDED,
            AttemptStatus.FAILED,
            AttemptStatus.CLOSED,
        }
    ),
    # Unknown (a time-out) is never treated as failed: only a query can end it.
    AttemptStatus.UNKNOWN: frozenset(
        {
            AttemptStatus.PENDING,
            AttemptStatus.SUCCEEDED,
            AttemptStatus.FAILED,
            AttemptStatus.CLOSED,
        }
    ),
    AttemptStatus.FAILED: frozenset({AttemptStatus.SUCCEEDED}),
    AttemptStatus.CLOSED: frozenset({AttemptStatus.SUCCEEDED}),
    AttemptStatus.SUCCEEDED: frozenset(),
}

OPEN_ATTEMPT_STATUSES = frozenset(
    {AttemptStatus.SUBMITTING, AttemptStatus.PENDING, AttemptStatus.UNKNOWN}
)
FINAL_PAYMENT_STATUSES = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELLED, PaymentStatus.REFUNDED}
)


def check_payment_transition(current: str, new: str) -> PaymentStatus:
    """Return ``new`` as a status if a payment may move there from ``current``.

    :raises IllegalTransition: otherwise.
    """
    return _check(PAYMENT_TRANSITIONS, PaymentStatus, "payment", current, new)


def check_attempt_transition(current: str, new: str) -> AttemptStatus:
    """Return ``new`` as a status if an attempt may move there from ``current``.

    :raises IllegalTransition: otherwise.
    """
    return _check(ATTEMPT_TRANSITIONS, AttemptStatus, "attempt", current, new)


def _check(table: dict[S, frozenset[S]], kind: type[S], label: str, current: str, new: str) -> S:
    try:
        source, target = kind(current), kind(new)
    except ValueError:
        raise IllegalTransition(f"unknown {label} status {current!r} or {new!r}") from None
    if target not in table[source]:
        raise IllegalTransition(f"{label} cannot go from {source} to {target}")
    return target
