"""Turn domain objects into plain display data, so templates never compare status strings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from notifications.models import DeliveryChannel, DeliveryStatus, Notice, NoticeKind, NoticeStatus
from portal.forms import SETTLE_CHOICE
from repayments.domain.errors import DomainError
from repayments.domain.money import ZERO, round_fen
from repayments.domain.states import PaymentStatus
from repayments.models import (
    BoundCard,
    Channel,
    Installment,
    Loan,
    LoanStatus,
    Payment,
    PaymentAttempt,
    PaymentMethodType,
    PaymentPurpose,
)
from repayments.selectors import RecordAttempt, RecordPayment, record_payment_of
from repayments.services.allocation import accrue_penalties
from repayments.services.methods import PaymentChoice


@dataclass(frozen=True)
class LoanCard:
    loan_id: int
    contract_number: str
    vehicle: str
    principal: Decimal
    principal_repaid: Decimal
    installments_left: int
    status_label: str
    tone: str  # ok | warn | done
    repayable: bool


def loan_cards(loans: Iterable[Loan]) -> list[LoanCard]:
    cards = []
    for loan in loans:
        if loan.status != LoanStatus.ACTIVE:
            label, tone = loan.get_status_display(), "done"
        elif getattr(loan, "is_overdue", False):
            label, tone = _("Overdue: please repay soon"), "warn"
        else:
            label, tone = _("Repaying on schedule"), "ok"
        cards.append(
            LoanCard(
                loan_id=loan.pk,
                contract_number=loan.contract_number,
                vehicle=loan.vehicle,
                principal=loan.principal,
                principal_repaid=round_fen(getattr(loan, "principal_repaid", None) or ZERO),
                installments_left=getattr(loan, "installments_left", 0),
                status_label=str(label),
                tone=tone,
                repayable=loan.status == LoanStatus.ACTIVE,
            )
        )
    return cards


# --- Payment status, method and record rows ----------------------------------------

# How long the next status check waits: 2 s, 4 s, 8 s, 16 s, then every 30 s, and
# polling stops after MAX_POLLS (the janitor keeps asking on its own schedule).
FIRST_POLL_SECONDS = 2
MAX_POLL_SECONDS = 30
MAX_POLLS = 20


def poll_delay(poll: int) -> int:
    """Seconds before status check number ``poll`` (0-based): doubling, capped."""
    return min(FIRST_POLL_SECONDS * 2 ** max(poll, 0), MAX_POLL_SECONDS)


@dataclass(frozen=True)
class StatusBadge:
    label: str
    tone: str  # progress | ok | bad | neutral
    symbol: str  # shown beside the label, so status never relies on colour alone
    is_final: bool


_STATUS_BADGES = {
    PaymentStatus.CREATED: (gettext_lazy("Processing"), "progress", "…", False),
    PaymentStatus.PROCESSING: (gettext_lazy("Being confirmed"), "progress", "…", False),
    PaymentStatus.SUCCEEDED: (gettext_lazy("Succeeded"), "ok", "✓", True),
    PaymentStatus.FAILED: (gettext_lazy("Failed"), "bad", "✕", True),
    PaymentStatus.CANCELLED: (gettext_lazy("Cancelled"), "neutral", "○", True),
    PaymentStatus.REFUNDED: (gettext_lazy("Refunded"), "neutral", "↩", True),
}


def status_badge(status: str) -> StatusBadge:
    label, tone, symbol, final = _STATUS_BADGES[PaymentStatus(status)]
    return StatusBadge(str(label), tone, symbol, final)


# Short names that read well inside a sentence ("已提交支付宝", "银行已受理").
CHANNEL_WORDS = {
    Channel.ALIPAY: gettext_lazy("Alipay"),
    Channel.WECHATPAY: gettext_lazy("WeChat Pay"),
    Channel.UNIONPAY: gettext_lazy("the bank"),
}
CHANNEL_TRADE_NO_LABELS = {
    Channel.ALIPAY: gettext_lazy("Alipay transaction number"),
    Channel.WECHATPAY: gettext_lazy("WeChat Pay transaction number"),
    Channel.UNIONPAY: gettext_lazy("Bank transaction number"),
}
METHOD_WORDS = {
    PaymentMethodType.ALIPAY_BALANCE: gettext_lazy("Alipay"),
    PaymentMethodType.ALIPAY_HUABEI: gettext_lazy("Alipay Huabei"),
    PaymentMethodType.WECHATPAY_BALANCE: gettext_lazy("WeChat Pay"),
    PaymentMethodType.WECHATPAY_CREDIT_CARD: gettext_lazy("WeChat Pay (credit card)"),
    PaymentMethodType.BANK_DEBIT_CARD: gettext_lazy("Bank card withholding"),
    PaymentMethodType.BANK_CREDIT_CARD: gettext_lazy("Credit card withholding"),
}
_CARD_METHODS = {PaymentMethodType.BANK_DEBIT_CARD: False, PaymentMethodType.BANK_CREDIT_CARD: True}


def channel_words(channel: str) -> str:
    return str(CHANNEL_WORDS.get(Channel(channel), channel))


def card_last4(card: BoundCard) -> str:
    digits = [c for c in card.card_masked if c.isdigit()]
    return "".join(digits[-4:])


def card_words(card: BoundCard) -> str:
    return _("%(bank)s card ending %(last4)s") % {"bank": card.bank_name, "last4": card_last4(card)}


def method_words(method_type: str, cards: Sequence[BoundCard] = ()) -> str:
    """ "Bank card withholding, card ending 0018" when the card is known, else the method.

    An attempt does not record which card it debited, so the card is named only when
    the borrower has exactly one card of that kind: then it cannot have been another.
    """
    label = str(METHOD_WORDS.get(PaymentMethodType(method_type), method_type))
    is_credit = _CARD_METHODS.get(PaymentMethodType(method_type))
    if is_credit is None:
        return label
    candidates = [card for card in cards if card.is_credit == is_credit]
    if len(candidates) != 1:
        return label
    return _("%(method)s, card ending %(last4)s") % {
        "method": label,
        "last4": card_last4(candidates[0]),
    }


@dataclass(frozen=True)
class PaymentRow:
    public_id: str
    amount: Decimal
    purpose: str
    contract_number: str
    vehicle: str
    method: str  # empty before any channel was tried
    channel: str
    channel_differs: bool  # False when the method already names it (支付宝 / 支付宝)
    created_at: datetime
    value_date: date | None  # when the channel accepted the money: decides on-time
    confirmed_at: datetime | None
    status: StatusBadge
    note: str  # a plain-words remark: a fallback, a late success, a failure reason


def payment_rows(payments: Iterable[RecordPayment], cards: Sequence[BoundCard]) -> list[PaymentRow]:
    return [payment_row(payment, cards) for payment in payments]


def payment_row(payment: RecordPayment | Payment, cards: Sequence[BoundCard]) -> PaymentRow:
    """One record row; a payment model must come with its loan and attempts loaded."""
    if isinstance(payment, Payment):
        payment = record_payment_of(payment)
    attempts = payment.attempts
    last = attempts[-1] if attempts else None
    method = method_words(last.method_type, cards) if last else ""
    channel = str(Channel(last.channel).label) if last else ""
    return PaymentRow(
        public_id=str(payment.public_id),
        amount=payment.amount,
        purpose=str(PaymentPurpose(payment.purpose).label),
        contract_number=payment.contract_number,
        vehicle=payment.vehicle,
        method=method,
        channel=channel,
        channel_differs=not method.startswith(channel),
        created_at=payment.created_at,
        value_date=timezone.localdate(payment.value_at) if payment.value_at else None,
        confirmed_at=payment.succeeded_at,
        status=status_badge(payment.status),
        note=_row_note(payment, attempts),
    )


def _row_note(payment: RecordPayment, attempts: Sequence[RecordAttempt]) -> str:
    status = PaymentStatus(payment.status)
    last = attempts[-1] if attempts else None
    if status == PaymentStatus.FAILED and last is not None:
        return _("Not charged: %(reason)s") % {"reason": failure_words(last)}
    if status == PaymentStatus.SUCCEEDED and len(attempts) > 1:
        first = attempts[0]
        return _("%(first)s did not go through; paid with %(method)s instead") % {
            "first": METHOD_WORDS.get(PaymentMethodType(first.method_type), first.method_type),
            "method": METHOD_WORDS.get(PaymentMethodType(attempts[-1].method_type), ""),
        }
    if status == PaymentStatus.PROCESSING and last is not None and last.status == "unknown":
        return _("We are checking the result with %(channel)s; you will not be charged twice.") % {
            "channel": channel_words(last.channel)
        }
    return ""


# Bank and channel codes in plain words; anything else is shown as the channel said it.
FAILURE_WORDS = {
    "51": gettext_lazy("not enough money on the card"),
    "64": gettext_lazy("not enough money on the card"),
    "INSUFFICIENT_FUNDS": gettext_lazy("not enough money on the card"),
    "61": gettext_lazy("over the card's limit for one payment"),
    "channel_unavailable": gettext_lazy("the payment channel could not be reached"),
    "closed": gettext_lazy("the order was closed before it was paid"),
    "closed_for_fallback": gettext_lazy("closed so that another method could be used"),
}


def failure_words(attempt: PaymentAttempt | RecordAttempt) -> str:
    known = FAILURE_WORDS.get(attempt.failure_code)
    if known:
        return str(known)
    return attempt.failure_message or str(gettext_lazy("the channel did not give a reason"))


# --- Paying: amount choices, methods and the fallback offer ------------------------


@dataclass(frozen=True)
class AmountChoice:
    key: str  # next | overdue | custom
    label: str
    amount: Decimal | None  # None for "custom"
    detail: str


def amount_choices(loan: Loan, installments: list[Installment], today: date) -> list[AmountChoice]:
    """What the borrower can pay now: the oldest unpaid installment, all that is overdue
    (with penalties to today, as the booking will count them), or an amount of their own."""
    accrue_penalties(loan, installments, as_of=today)  # in memory, never saved here
    unpaid = [i for i in installments if not i.is_paid]
    choices: list[AmountChoice] = []
    if unpaid:
        first = unpaid[0]
        late = first.due_date < today
        detail = (
            _("Overdue since %(date)s, including late penalty") if late else _("Due on %(date)s")
        ) % {"date": first.due_date.isoformat()}
        choices.append(
            AmountChoice(
                "next",
                _("Installment %(number)s") % {"number": first.number},
                round_fen(first.total_due - first.total_paid),
                str(detail),
            )
        )
    overdue = [i for i in unpaid if i.due_date < today]
    if len(overdue) > 1:
        numbers = "、".join(str(i.number) for i in overdue)
        choices.append(
            AmountChoice(
                "overdue",
                _("Everything overdue"),
                round_fen(sum((i.total_due - i.total_paid for i in overdue), ZERO)),
                _("Installments %(numbers)s, including late penalties") % {"numbers": numbers},
            )
        )
    choices.append(AmountChoice("custom", _("Another amount"), None, ""))
    choices.append(
        AmountChoice(
            SETTLE_CHOICE,
            _("Settle the whole loan early"),
            None,
            _("You first see a quote with every line; nothing is paid until you confirm it."),
        )
    )
    return choices


def outstanding_total(installments: Iterable[Installment]) -> Decimal:
    return round_fen(sum((i.total_due - i.total_paid for i in installments), ZERO))


@dataclass(frozen=True)
class MethodChoice:
    method_type: str
    label: str
    available: bool
    message: str  # why not, and what to do; empty when available
    recommended: bool
    card: str  # the card a withholding would debit, e.g. "工商银行 card ending 0018"


def method_choices(
    choice: PaymentChoice, cards: Sequence[BoundCard], *, avoid_channel: str = ""
) -> list[MethodChoice]:
    """Every method, available first; ``avoid_channel`` (one that just failed) goes last
    among the available ones, and the recommendation moves to the next channel."""
    options = sorted(
        choice.options,
        key=lambda o: (not o.option.available, o.option.channel == avoid_channel),
    )
    first_available = next((o for o in options if o.option.available), None)
    best = choice.recommended
    if avoid_channel and first_available is not None:
        best = first_available.option.method_type
    return [
        MethodChoice(
            method_type=o.option.method_type,
            label=str(METHOD_WORDS.get(PaymentMethodType(o.option.method_type), o.label)),
            available=o.option.available,
            message=o.message,
            recommended=o.option.method_type == best,
            card=_card_for(o.option.method_type, cards),
        )
        for o in options
    ]


def withholding_card(method_type: str, cards: Sequence[BoundCard], today: date) -> BoundCard | None:
    """The card a withholding with ``method_type`` debits: the first usable by priority."""
    is_credit = _CARD_METHODS.get(PaymentMethodType(method_type))
    if is_credit is None:
        return None
    usable = [
        card
        for card in cards
        if card.is_active
        and card.is_credit == is_credit
        and (card.verified_until is None or card.verified_until >= today)
    ]
    return usable[0] if usable else None


def _card_for(method_type: str, cards: Sequence[BoundCard]) -> str:
    card = withholding_card(method_type, cards, timezone.localdate())
    return card_words(card) if card else ""


_DOMAIN_ERROR_WORDS = {
    "loan_not_repayable": gettext_lazy("This loan is settled; there is nothing left to repay."),
    "idempotency_key_reused": gettext_lazy(
        "This form was already used for another payment. Please start again."
    ),
    "method_not_allowed": gettext_lazy("Your loan contract does not allow this payment method."),
    "attempt_already_open": gettext_lazy(
        "An earlier attempt for this loan is still being confirmed. We will not charge you "
        "twice: please wait for its result."
    ),
    "payment_not_payable": gettext_lazy("This payment is already complete; nothing more to pay."),
    "invalid_amount": gettext_lazy(
        "Enter an amount in yuan greater than zero, with at most two decimals."
    ),
}


def domain_error_words(error: DomainError) -> str:
    """What a refused payment means for the borrower, in their language."""
    words = _DOMAIN_ERROR_WORDS.get(error.code)
    if words is None:
        return _("This payment could not be started. Please try again, or call us.")
    return str(words)


# --- The notices inbox ---------------------------------------------------------------

_DELIVERY_TONES = {DeliveryStatus.DELIVERED: "ok", DeliveryStatus.SENT: "progress"}


@dataclass(frozen=True)
class DeliveryLine:
    channel: str
    status: str
    tone: str


@dataclass(frozen=True)
class NoticeItem:
    kind: str
    body: str
    at: datetime
    is_correction: bool
    went_out: bool  # False: every channel failed (the inbox still has it)
    deliveries: list[DeliveryLine]


def notice_items(notices: Iterable[Notice]) -> list[NoticeItem]:
    items = []
    for notice in notices:
        deliveries = [
            DeliveryLine(
                channel=str(DeliveryChannel(d.channel).label),
                status=str(DeliveryStatus(d.status).label),
                tone=_DELIVERY_TONES.get(DeliveryStatus(d.status), "bad"),
            )
            for d in notice.deliveries.all()  # prefetched by notices_in_inbox
        ]
        items.append(
            NoticeItem(
                kind=str(NoticeKind(notice.kind).label),
                body=notice.body,
                at=notice.delivered_at or notice.created_at,
                is_correction=notice.kind == NoticeKind.CORRECTION,
                went_out=notice.status == NoticeStatus.DELIVERED,
                deliveries=deliveries,
            )
        )
    return items
