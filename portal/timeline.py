"""A payment's timeline in plain words, for the borrower.

The timeline rows (``PaymentEvent``) are written for support staff: kinds,
state codes and English summaries. Here each one becomes a sentence a borrower
understands, e.g. 已提交支付宝 → 支付宝已受理 → 等待银行确认 (通常5分钟内) →
已到账并入账第7期. Rows that add nothing for a borrower (a payment moving to
"processing" right after its first request) are left out; every money fact
(accepted, charged, refused, booked, refunded) is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _

from portal.presenters import (
    CHANNEL_TRADE_NO_LABELS,
    channel_words,
    failure_words,
    method_words,
)
from repayments.domain.money import format_yuan
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    Channel,
    EventKind,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethodType,
    PaymentPurpose,
)

WALLET_METHODS = frozenset(
    {
        PaymentMethodType.ALIPAY_BALANCE,
        PaymentMethodType.ALIPAY_HUABEI,
        PaymentMethodType.WECHATPAY_BALANCE,
        PaymentMethodType.WECHATPAY_CREDIT_CARD,
    }
)
CHANNEL_REPORTS = frozenset(
    {EventKind.REQUEST, EventKind.CALLBACK, EventKind.POLL, EventKind.SETTLEMENT}
)


@dataclass(frozen=True)
class TimelineStep:
    at: datetime | None  # None for the step still to come
    text: str
    tone: str  # done | current | bad


def timeline_steps(payment: Payment) -> list[TimelineStep]:
    """Plain-words steps from the payment's prefetched events, attempts and allocations."""
    attempts = {a.pk: a for a in payment.attempts.all()}
    steps: list[TimelineStep] = []
    for event in payment.events.all():
        attempt = attempts.get(event.attempt_id) if event.attempt_id else None
        step = _step(event, attempt, payment)
        if step is not None:
            steps.append(step)
    ongoing = [a for a in attempts.values() if a.is_open]
    if ongoing and payment.status in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
        steps.append(TimelineStep(None, _waiting_words(ongoing[-1]), "current"))
    return steps


def _step(
    event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment
) -> TimelineStep | None:
    builder = _BUILDERS.get(EventKind(event.kind))
    if builder is None:
        return None
    built = builder(event, attempt, payment)
    if built is None:
        return None
    text, tone = built
    return TimelineStep(event.occurred_at, text, tone)


Built = tuple[str, str] | None


def _created(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    if payment.purpose == PaymentPurpose.EARLY_SETTLEMENT:
        return _("Early settlement of %(amount)s started") % {"amount": _yuan(payment)}, "done"
    return _("Repayment of %(amount)s started") % {"amount": _yuan(payment)}, "done"


def _channel_report(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    if attempt is None:
        return None
    channel = channel_words(attempt.channel)
    status = event.to_status
    if event.kind == EventKind.REQUEST and status == AttemptStatus.SUBMITTING:
        return _("Sent to %(channel)s") % {"channel": channel}, "done"
    if status == AttemptStatus.PENDING:
        return _("%(channel)s accepted it") % {"channel": channel}, "done"
    if status == AttemptStatus.UNKNOWN:
        return (
            _("%(channel)s did not answer in time; we are asking it for the result")
            % {"channel": channel},
            "current",
        )
    if status == AttemptStatus.SUCCEEDED:
        return _("%(channel)s confirmed the money was received") % {"channel": channel}, "done"
    if status in (AttemptStatus.FAILED, AttemptStatus.CLOSED):
        return _attempt_not_paid(event, attempt, payment)
    return None


def _attempt_not_paid(event: PaymentEvent, attempt: PaymentAttempt, payment: Payment) -> Built:
    """A failed or closed attempt, told as that attempt's outcome only.

    "No money was taken" is said only while nothing later took money for this payment:
    once the attempt itself turned out paid (a late success) or another method paid,
    the step must not read as if the repayment failed (rule 5).
    """
    channel = channel_words(attempt.channel)
    if attempt.status == AttemptStatus.SUCCEEDED:
        return (
            _("%(channel)s first reported the payment as not completed") % {"channel": channel},
            "done",
        )
    later = _attempt_after(attempt, payment)
    if later is not None:
        return (
            _("%(channel)s did not go through; switched to %(method)s")
            % {"channel": channel, "method": method_words(later.method_type)},
            "done" if payment.status == PaymentStatus.SUCCEEDED else "bad",
        )
    if event.to_status == AttemptStatus.CLOSED:
        return _("%(channel)s order closed; no money was taken") % {"channel": channel}, "done"
    reason = failure_words(attempt) if attempt.status == event.to_status else ""
    reason = reason or event.data.get("failure_code", "") or _("no reason given")
    return (
        _("%(channel)s did not take the money: %(reason)s")
        % {"channel": channel, "reason": reason},
        "bad",
    )


def _attempt_after(attempt: PaymentAttempt, payment: Payment) -> PaymentAttempt | None:
    """The next attempt of the same payment (the method switched to), if any."""
    later = [a for a in payment.attempts.all() if a.pk > attempt.pk]
    return min(later, key=lambda a: a.pk) if later else None


def _state_change(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    target = event.to_status
    if target == PaymentStatus.SUCCEEDED and event.data.get("late_success"):
        return (
            _(
                "The money arrived after all: this repayment succeeded and the earlier "
                "failure no longer applies"
            ),
            "done",
        )
    if target == PaymentStatus.FAILED:
        if not _failure_is_last_word(attempt, payment):
            return None  # the attempt's own step tells what happened to it
        return _("This repayment did not go through and you were not charged"), "bad"
    if target == PaymentStatus.REFUNDED:
        return _("Refunded"), "done"
    if target == PaymentStatus.CANCELLED:
        return _("Cancelled"), "done"
    return None  # processing and succeeded are told by the channel's own steps


def _failure_is_last_word(attempt: PaymentAttempt | None, payment: Payment) -> bool:
    """True when the payment ended unpaid with this failure: no later method was tried
    and the money did not arrive after all."""
    if payment.status not in (PaymentStatus.FAILED, PaymentStatus.CANCELLED):
        return False
    return attempt is None or _attempt_after(attempt, payment) is None


def _allocation(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    numbers = sorted(
        {a.installment.number for a in payment.allocations.all() if a.installment is not None}
    )
    if payment.purpose == PaymentPurpose.EARLY_SETTLEMENT:
        text = _("Received and booked: the loan is settled")
    elif numbers:
        text = _("Received and booked to installment %(numbers)s") % {
            "numbers": "、".join(str(n) for n in numbers)
        }
    else:
        text = _("Received and booked to your loan")
    extra = _money(event.data.get("credit_added"))
    if extra:
        text += " " + _(
            "(%(amount)s more than was due is kept as credit for your next installment)"
        ) % {"amount": format_yuan(extra)}
    return text, "done"


def _ignored(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    channel = channel_words(attempt.channel) if attempt else _("the channel")
    return (
        _("An out-of-date message from %(channel)s was checked and ignored; it changes nothing")
        % {"channel": channel},
        "done",
    )


def _note(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    if event.data.get("refund_required"):
        return _(
            "You were charged twice; the second charge will be refunded to where it came from"
        ), "current"
    if event.data.get("needs_review"):
        return _(
            "The channel has not confirmed for a long time; our team is checking it by hand"
        ), "current"
    return None


def _refund(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    if event.data.get("succeeded"):
        return _("The second charge was refunded"), "done"
    return _("Refund of the second charge is being processed"), "current"


def _notification(event: PaymentEvent, attempt: PaymentAttempt | None, payment: Payment) -> Built:
    return _("We sent you a message about this repayment"), "done"


_BUILDERS: dict[EventKind, Callable[[PaymentEvent, PaymentAttempt | None, Payment], Built]] = {
    EventKind.CREATED: _created,
    EventKind.REQUEST: _channel_report,
    EventKind.CALLBACK: _channel_report,
    EventKind.POLL: _channel_report,
    EventKind.SETTLEMENT: _channel_report,
    EventKind.STATE_CHANGE: _state_change,
    EventKind.ALLOCATION: _allocation,
    EventKind.IGNORED: _ignored,
    EventKind.NOTE: _note,
    EventKind.REFUND: _refund,
    EventKind.NOTIFICATION: _notification,
}


def _waiting_words(attempt: PaymentAttempt) -> str:
    channel = channel_words(attempt.channel)
    if attempt.status == AttemptStatus.UNKNOWN:
        return _("Checking the result with %(channel)s (you will not be charged twice)") % {
            "channel": channel
        }
    if attempt.method_type in WALLET_METHODS:
        return _("Waiting for the payment in %(channel)s to be completed") % {"channel": channel}
    return _("Waiting for the bank to confirm (usually within 5 minutes)")


def trade_numbers(attempts: Sequence[PaymentAttempt]) -> list[tuple[str, str]]:
    """(label, number) for each attempt the channel gave a transaction number to."""
    return [
        (str(CHANNEL_TRADE_NO_LABELS[Channel(a.channel)]), a.channel_trade_no)
        for a in attempts
        if a.channel_trade_no
    ]


def _yuan(payment: Payment) -> str:
    return format_yuan(payment.amount)


def _money(value: object) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount > 0 else None
