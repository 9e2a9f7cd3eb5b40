"""Which payment methods a borrower can use right now, and why not (seeds 002, 003).

Every method is always listed: an unavailable one carries a stable reason code
and the facts the message needs, so a borrower never sees an empty list or a
bare "no available payment method".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum


class Reason(StrEnum):
    LOAN_NOT_REPAYABLE = "loan_not_repayable"
    ATTEMPT_IN_PROGRESS = "attempt_in_progress"
    NOT_ALLOWED_BY_PRODUCT = "not_allowed_by_product"
    CHANNEL_DISABLED = "channel_disabled"
    CHANNEL_MAINTENANCE = "channel_maintenance"
    CHANNEL_UNHEALTHY = "channel_unhealthy"
    OVER_LIMIT = "over_limit"
    NO_BOUND_CARD = "no_bound_card"
    CARD_NEEDS_VERIFICATION = "card_needs_verification"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True)
class ChannelState:
    channel: str
    enabled: bool
    priority: int
    single_limit: Decimal
    maintenance_until: datetime | None  # set only while maintenance is running now
    circuit_open_until: datetime | None


@dataclass(frozen=True)
class MethodFacts:
    method_type: str
    channel: str
    allowed_by_product: bool
    needs_card: bool
    has_card: bool = True
    card_verified: bool = True


@dataclass(frozen=True)
class LoanFacts:
    repayable: bool
    attempt_in_progress: bool
    recent_attempts: int


@dataclass(frozen=True)
class MethodOption:
    method_type: str
    channel: str
    available: bool
    reason: Reason | None = None
    retry_after: datetime | None = None
    limit: Decimal | None = None


@dataclass(frozen=True)
class RiskLimits:
    """Thresholds of the risk rules; admins keep them, these are the defaults."""

    max_attempts_per_hour: int = 5
    # The circuit opens when at least this many recent attempts hit a channel and
    # at least this share of them could not reach it, for a cool-off after the last.
    circuit_min_attempts: int = 5
    circuit_failure_ratio: Decimal = Decimal("0.5")
    circuit_cool_off: timedelta = timedelta(minutes=1)


DEFAULT_LIMITS = RiskLimits()


def circuit_is_open(
    *, attempts: int, unreachable: int, limits: RiskLimits = DEFAULT_LIMITS
) -> bool:
    """Trip the breaker on a high share of 'channel unreachable' failures."""
    return (
        attempts >= limits.circuit_min_attempts
        and unreachable >= attempts * limits.circuit_failure_ratio
    )


def method_options(
    *,
    amount: Decimal,
    loan: LoanFacts,
    methods: Sequence[MethodFacts],
    channels: dict[str, ChannelState],
    limits: RiskLimits = DEFAULT_LIMITS,
) -> list[MethodOption]:
    """Return one option per method, available ones first in channel priority order.

    A channel with no settings (an admin deleted its row) is shown switched off rather
    than breaking the list: the borrower still sees every other way to pay.
    """
    states = {
        method.channel: channels.get(method.channel) or _unconfigured(method.channel)
        for method in methods
    }
    options = [_option(amount, loan, method, states[method.channel], limits) for method in methods]
    return sorted(
        options, key=lambda o: (not o.available, states[o.channel].priority, o.method_type)
    )


def _unconfigured(channel: str) -> ChannelState:
    return ChannelState(
        channel=channel,
        enabled=False,
        priority=2**31 - 1,  # last
        single_limit=Decimal(0),
        maintenance_until=None,
        circuit_open_until=None,
    )


def _option(
    amount: Decimal,
    loan: LoanFacts,
    method: MethodFacts,
    channel: ChannelState,
    limits: RiskLimits,
) -> MethodOption:
    def refused(
        reason: Reason, retry_after: datetime | None = None, limit: Decimal | None = None
    ) -> MethodOption:
        return MethodOption(method.method_type, method.channel, False, reason, retry_after, limit)

    # Order matters: the first reason is the one the borrower can act on soonest.
    if not loan.repayable:
        return refused(Reason.LOAN_NOT_REPAYABLE)
    if loan.attempt_in_progress:
        return refused(Reason.ATTEMPT_IN_PROGRESS)
    if not method.allowed_by_product:
        return refused(Reason.NOT_ALLOWED_BY_PRODUCT)
    if not channel.enabled:
        return refused(Reason.CHANNEL_DISABLED)
    if channel.maintenance_until:
        return refused(Reason.CHANNEL_MAINTENANCE, retry_after=channel.maintenance_until)
    if channel.circuit_open_until:
        return refused(Reason.CHANNEL_UNHEALTHY, retry_after=channel.circuit_open_until)
    if amount > channel.single_limit:
        return refused(Reason.OVER_LIMIT, limit=channel.single_limit)
    if method.needs_card and not method.has_card:
        return refused(Reason.NO_BOUND_CARD)
    if method.needs_card and not method.card_verified:
        return refused(Reason.CARD_NEEDS_VERIFICATION)
    if loan.recent_attempts >= limits.max_attempts_per_hour:
        return refused(Reason.TOO_MANY_ATTEMPTS)
    return MethodOption(method.method_type, method.channel, True)


def recommended(options: Sequence[MethodOption]) -> MethodOption | None:
    """The first available option (they come sorted by channel priority)."""
    return next((option for option in options if option.available), None)
