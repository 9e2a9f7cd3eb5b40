"""The one small interface every payment channel adapter implements.

Adapters speak the channel's own protocol and take and return the plain
dataclasses below, never models. Every network call has a timeout, and every
failure is classified at the edge: declined (definitely not charged),
unavailable (not reached, not charged) or unknown (may have charged: query it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from repayments.domain.states import AttemptStatus

DEFAULT_TIMEOUT_SECONDS = 10.0


class ChannelError(Exception):
    """A channel call did not give a usable answer."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ChannelDeclined(ChannelError):
    """The channel refused: certainly no money moved (insufficient funds, card frozen...)."""


class ChannelUnavailable(ChannelError):
    """The channel could not be reached or refused service before taking money."""


class ChannelOutcomeUnknown(ChannelError):
    """Sent, but no answer (time-out, system busy): money may have moved; query it."""


class CallbackRejected(Exception):
    """A callback failed verification (signature, replay window, foreign app/merchant).

    It is kept for audit and never changes state.
    """


class CallbackUnparseable(Exception):
    """A callback verified but its content is not understood (a changed field or format).

    It is quarantined for replay after a fix, never dropped.
    """


@dataclass(frozen=True)
class OrderRequest:
    out_trade_no: str
    amount: Decimal
    subject: str
    notify_url: str
    method_type: str
    return_url: str = ""
    card_token: str = ""
    expires_at: datetime | None = None
    # When we placed the order; UnionPay finds an order by number *and* this time,
    # so the same value must go into the order and every later query or cancel.
    placed_at: datetime | None = None


@dataclass(frozen=True)
class NextAction:
    """What the borrower must do: follow a URL, scan a QR code, or nothing (withholding)."""

    kind: str  # "redirect" | "qr_code" | "none"
    value: str = ""


@dataclass(frozen=True)
class TradeResult:
    """The channel's view of one order, from a create answer, a query or a callback."""

    out_trade_no: str
    status: AttemptStatus
    channel_trade_no: str = ""
    amount: Decimal | None = None
    accepted_at: datetime | None = None
    funding: str = ""  # e.g. "PCREDIT" when Alipay says Huabei paid
    failure_code: str = ""
    failure_message: str = ""
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderCreated:
    result: TradeResult
    next_action: NextAction


@dataclass(frozen=True)
class RefundResult:
    refund_no: str
    succeeded: bool
    channel_refund_no: str = ""
    failure_code: str = ""


@dataclass(frozen=True)
class InboundCallback:
    """An async notification exactly as received: raw bytes, never re-serialised."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class CallbackAck:
    """The exact answer the channel expects so that it stops resending."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class SettlementRecord:
    out_trade_no: str
    channel_trade_no: str
    amount: Decimal
    kind: str  # "payment" | "refund"
    settled_on: date


class PaymentChannel(Protocol):
    name: str

    def create_order(self, request: OrderRequest) -> OrderCreated: ...

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        """``placed_at``: when we sent the order (UnionPay finds orders by number and time)."""
        ...

    def close(self, out_trade_no: str, *, placed_at: datetime | None = None) -> None: ...

    def refund(
        self,
        *,
        out_trade_no: str,
        refund_no: str,
        amount: Decimal,
        reason: str,
        placed_at: datetime | None = None,
    ) -> RefundResult:
        """``placed_at``: when the original order was placed (as for :meth:`query`)."""
        ...

    def parse_callback(self, callback: InboundCallback, *, now: datetime) -> TradeResult: ...

    def callback_ack(self) -> CallbackAck: ...

    def fetch_settlement_file(self, day: date) -> list[SettlementRecord]: ...


@dataclass(frozen=True)
class DebitBatchLine:
    """One withholding of a batch: our order number, the amount, the bound card's token."""

    out_trade_no: str
    amount: Decimal
    card_token: str


@runtime_checkable
class BatchDebitChannel(Protocol):
    """A withholding channel that also takes many debits as one signed batch file.

    Each line is an order of its own (its number can be queried, cancelled and
    refunded like any other); only the sending and the results come together.
    """

    max_batch_lines: int

    def submit_debit_batch(
        self, *, batch_no: str, placed_at: datetime, lines: Sequence[DebitBatchLine]
    ) -> list[TradeResult | ChannelError]:
        """One answer per line, in order: the line's result (PENDING once the channel
        took it) or the error that settles it, exactly as :meth:`PaymentChannel.create_order`
        would raise it for that one order (declined, unavailable, outcome unknown)."""
        ...

    def query_debit_batch(
        self,
        *,
        batch_no: str,
        placed_at: datetime,
        out_trade_nos: Sequence[str],
        sent_at: datetime | None = None,
    ) -> dict[str, TradeResult]:
        """What the channel says of each named line of the batch placed at ``placed_at``
        and sent at ``sent_at``.

        :raises ChannelUnavailable: when it cannot say now (ask again later).
        """
        ...
