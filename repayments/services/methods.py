"""Listing how a borrower can pay a loan now, with a reason for every "not now"."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from repayments.domain.availability import (
    ChannelState,
    LoanFacts,
    MethodFacts,
    MethodOption,
    Reason,
    RiskLimits,
    circuit_is_open,
    method_options,
    recommended,
)
from repayments.domain.money import format_yuan, parse_amount
from repayments.domain.states import OPEN_ATTEMPT_STATUSES
from repayments.models import (
    BoundCard,
    Channel,
    ChannelSetting,
    Loan,
    LoanStatus,
    Payment,
    PaymentAttempt,
    PaymentMethodType,
    RiskRules,
)

METHOD_CHANNEL = {
    PaymentMethodType.ALIPAY_BALANCE: Channel.ALIPAY,
    PaymentMethodType.ALIPAY_HUABEI: Channel.ALIPAY,
    PaymentMethodType.WECHATPAY_BALANCE: Channel.WECHATPAY,
    PaymentMethodType.WECHATPAY_CREDIT_CARD: Channel.WECHATPAY,
    PaymentMethodType.BANK_DEBIT_CARD: Channel.UNIONPAY,
    PaymentMethodType.BANK_CREDIT_CARD: Channel.UNIONPAY,
}
CARD_METHODS = {PaymentMethodType.BANK_DEBIT_CARD: False, PaymentMethodType.BANK_CREDIT_CARD: True}
# Attempts that failed because the channel could not be reached carry this code.
UNREACHABLE_FAILURE_CODE = "channel_unavailable"
HEALTH_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class ExplainedOption:
    option: MethodOption
    label: str
    message: str  # empty when available


@dataclass(frozen=True)
class PaymentChoice:
    options: list[ExplainedOption]
    recommended: str | None  # a method type
    advice: str  # what to do when nothing is available; empty otherwise


def payment_choice_for(*, loan: Loan, amount: Decimal | str, now: datetime) -> PaymentChoice:
    """Every payment method for this loan and amount, each available or explained.

    :raises InvalidAmount: for a malformed amount.
    """
    value = parse_amount(amount)
    limits = risk_limits()
    options = method_options(
        amount=value,
        loan=_loan_facts(loan, now),
        methods=_method_facts(loan, now),
        channels=channel_states(now, limits),
        limits=limits,
    )
    explained = [
        ExplainedOption(o, str(PaymentMethodType(o.method_type).label), explain(o)) for o in options
    ]
    best = recommended(options)
    return PaymentChoice(
        options=explained,
        recommended=best.method_type if best else None,
        advice="" if best else _advice(options),
    )


def fallback_choice_for(*, payment: Payment, now: datetime) -> PaymentChoice:
    """The methods a payment whose attempt failed may switch to, each available or explained.

    As :func:`payment_choice_for`, except that a channel one of this payment's own
    attempts could not reach within the health window counts as unhealthy: one
    unreachable attempt is too few to trip the circuit breaker, but offering that
    channel again as a one-tap choice sends the borrower straight back into it.

    :raises InvalidAmount: for a malformed amount.
    """
    choice = payment_choice_for(loan=payment.loan, amount=payment.amount, now=now)
    down = _unreachable_for_payment(payment, now)
    if not down:
        return choice
    options = [
        _as_unhealthy(o, retry_after=down[o.option.channel])
        if o.option.available and o.option.channel in down
        else o
        for o in choice.options
    ]
    options.sort(key=lambda o: not o.option.available)  # stable: priority order kept
    best = recommended([o.option for o in options])
    return PaymentChoice(
        options=options,
        recommended=best.method_type if best else None,
        advice="" if best else _advice([o.option for o in options]),
    )


def _unreachable_for_payment(payment: Payment, now: datetime) -> dict[str, datetime]:
    """Channel -> until when it counts as down, from this payment's unreachable attempts."""
    rows = (
        PaymentAttempt.objects.filter(
            payment=payment,
            failure_code=UNREACHABLE_FAILURE_CODE,
            updated_at__gte=now - HEALTH_WINDOW,
        )
        .values("channel")
        .annotate(last_failure=Max("updated_at"))
    )
    return {row["channel"]: row["last_failure"] + HEALTH_WINDOW for row in rows}


def _as_unhealthy(explained: ExplainedOption, *, retry_after: datetime) -> ExplainedOption:
    option = replace(
        explained.option,
        available=False,
        reason=Reason.CHANNEL_UNHEALTHY,
        retry_after=retry_after,
    )
    return ExplainedOption(option, explained.label, explain(option))


def risk_limits() -> RiskLimits:
    """The admin-kept thresholds, read on every call so a change applies at once."""
    rules = RiskRules.objects.filter(pk=RiskRules.SINGLE_ROW).first()
    if rules is None:
        return RiskLimits()
    return RiskLimits(
        max_attempts_per_hour=rules.max_attempts_per_hour,
        circuit_min_attempts=rules.circuit_min_attempts,
        circuit_failure_ratio=Decimal(rules.circuit_failure_percent) / 100,
        circuit_cool_off=timedelta(seconds=rules.circuit_cool_off_seconds),
    )


def channel_states(now: datetime, limits: RiskLimits | None = None) -> dict[str, ChannelState]:
    """Each channel's settings, maintenance window and circuit breaker, as of ``now``."""
    health = (
        PaymentAttempt.objects.filter(created_at__gte=now - HEALTH_WINDOW)
        .values("channel")
        .annotate(
            attempts=Count("id"),
            unreachable=Count("id", filter=Q(failure_code=UNREACHABLE_FAILURE_CODE)),
            last_failure=Max("updated_at", filter=Q(failure_code=UNREACHABLE_FAILURE_CODE)),
        )
    )
    by_channel = {row["channel"]: row for row in health}
    limits = limits or risk_limits()
    states = {}
    for setting in ChannelSetting.objects.all():
        row = by_channel.get(setting.channel, {"attempts": 0, "unreachable": 0})
        tripped = circuit_is_open(
            attempts=row["attempts"], unreachable=row["unreachable"], limits=limits
        )
        states[setting.channel] = ChannelState(
            channel=setting.channel,
            enabled=setting.is_enabled,
            priority=setting.priority,
            single_limit=setting.single_payment_limit,
            maintenance_until=_maintenance_until(setting, now),
            circuit_open_until=_circuit_until(row, tripped, now, limits.circuit_cool_off),
        )
    return states


def _circuit_until(
    row: dict[str, Any], tripped: bool, now: datetime, cool_off: timedelta
) -> datetime | None:
    """Open until a cool-off after the last unreachable failure, and no longer."""
    if not tripped or row.get("last_failure") is None:
        return None
    until: datetime = row["last_failure"] + cool_off
    return until if until > now else None


def _maintenance_until(setting: ChannelSetting, now: datetime) -> datetime | None:
    starts, ends = setting.maintenance_starts_at, setting.maintenance_ends_at
    if starts and starts <= now and (ends is None or now < ends):
        return ends or now + timedelta(days=365)
    return None


def _loan_facts(loan: Loan, now: datetime) -> LoanFacts:
    attempts = PaymentAttempt.objects.filter(loan=loan)
    return LoanFacts(
        repayable=loan.status == LoanStatus.ACTIVE,
        attempt_in_progress=attempts.filter(status__in=OPEN_ATTEMPT_STATUSES).exists(),
        recent_attempts=attempts.filter(created_at__gte=now - timedelta(hours=1)).count(),
    )


def _method_facts(loan: Loan, now: datetime) -> list[MethodFacts]:
    cards = list(BoundCard.objects.filter(borrower_id=loan.borrower_id, is_active=True))
    allowed = set(loan.product.allowed_method_types)
    facts = []
    for method, channel in METHOD_CHANNEL.items():
        needs_card = method in CARD_METHODS
        usable = [c for c in cards if c.is_credit == CARD_METHODS.get(method)]
        today = timezone.localdate(now)
        verified = any(c.verified_until is None or c.verified_until >= today for c in usable)
        facts.append(
            MethodFacts(
                method_type=method.value,
                channel=channel.value,
                allowed_by_product=method.value in allowed,
                needs_card=needs_card,
                has_card=bool(usable),
                card_verified=verified,
            )
        )
    return facts


def explain(option: MethodOption) -> str:
    """A translated sentence saying why a method cannot be used and what to do instead."""
    if option.available or option.reason is None:
        return ""
    when = f"{timezone.localtime(option.retry_after):%Y-%m-%d %H:%M}" if option.retry_after else ""
    messages = {
        Reason.LOAN_NOT_REPAYABLE: _("This loan is settled; there is nothing to repay."),
        Reason.ATTEMPT_IN_PROGRESS: _(
            "A payment for this loan is still being confirmed. Please wait for its result "
            "before paying again, so you are not charged twice."
        ),
        Reason.NOT_ALLOWED_BY_PRODUCT: _(
            "Your loan contract does not allow repaying with credit (such as Huabei or a "
            "credit card). Please use a balance or a debit card."
        ),
        Reason.CHANNEL_DISABLED: _("This payment method is not offered at the moment."),
        Reason.CHANNEL_MAINTENANCE: _(
            "Under maintenance until %(when)s. Please use another method or try again then."
        )
        % {"when": when},
        Reason.CHANNEL_UNHEALTHY: _(
            "This channel is having problems right now. Please use another method or try "
            "again after %(when)s."
        )
        % {"when": when},
        Reason.OVER_LIMIT: _("This method accepts at most %(limit)s per payment.")
        % {"limit": format_yuan(option.limit or Decimal(0))},
        Reason.NO_BOUND_CARD: _("No bank card is bound for withholding. Bind a card first."),
        Reason.CARD_NEEDS_VERIFICATION: _(
            "Your bound card's authorisation has expired. Please verify the card again."
        ),
        Reason.TOO_MANY_ATTEMPTS: _(
            "Too many payment attempts in the last hour. Please try again later or call us."
        ),
    }
    return str(messages[option.reason])


def _advice(options: list[MethodOption]) -> str:
    account = settings.REPAYMENT_BANK_ACCOUNT
    if any(o.reason == Reason.ATTEMPT_IN_PROGRESS for o in options):
        return explain(next(o for o in options if o.reason == Reason.ATTEMPT_IN_PROGRESS))
    return _(
        "No online method can take this payment right now. You can transfer the amount to "
        "our repayment account %(account)s (write your contract number in the note), or "
        "call 400-800-0000. Transfers received by the due date count as on time."
    ) % {"account": account}
