"""An in-memory channel for service tests until the HTTP sandbox drives them.

It keeps a ledger of orders and answers like a real channel would: an order
pays only when the test says so, a closed order cannot be paid, and a paid
order cannot be closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from repayments.channels.base import (
    CallbackAck,
    ChannelDeclined,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    NextAction,
    OrderCreated,
    OrderRequest,
    RefundResult,
    SettlementRecord,
    TradeResult,
)
from repayments.domain.states import AttemptStatus


@dataclass
class FakeChannel:
    name: str
    create_behaviour: str = (
        "pending"  # pending | succeeded | declined | unavailable | timeout_charged
    )
    orders: dict[str, AttemptStatus] = field(default_factory=dict)
    amounts: dict[str, Decimal] = field(default_factory=dict)
    charges: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)
    pay_on_close: bool = False  # the borrower pays in the instant before we close
    close_not_exist: bool = False  # the create never reached the channel
    reported_amount: Decimal | None = None  # the channel claims another amount

    def create_order(self, request: OrderRequest) -> OrderCreated:
        self.amounts[request.out_trade_no] = request.amount
        if self.create_behaviour == "unavailable":
            raise ChannelUnavailable("SYSTEM_BUSY")
        if self.create_behaviour == "declined":
            raise ChannelDeclined("INSUFFICIENT_FUNDS", "余额不足")
        if self.create_behaviour in ("succeeded", "timeout_charged"):
            self._charge(request.out_trade_no)
            if self.create_behaviour == "timeout_charged":
                raise ChannelOutcomeUnknown("TIMEOUT")
            return OrderCreated(self._result(request.out_trade_no), NextAction("none"))
        self.orders[request.out_trade_no] = AttemptStatus.PENDING
        return OrderCreated(
            self._result(request.out_trade_no), NextAction("redirect", "https://pay.example/x")
        )

    def pay(self, out_trade_no: str) -> None:
        """The borrower completes payment on the channel's page."""
        if self.orders.get(out_trade_no) == AttemptStatus.PENDING:
            self._charge(out_trade_no)

    def _charge(self, out_trade_no: str) -> None:
        self.orders[out_trade_no] = AttemptStatus.SUCCEEDED
        self.charges.append(out_trade_no)

    def _result(self, out_trade_no: str) -> TradeResult:
        return TradeResult(
            out_trade_no=out_trade_no,
            status=self.orders.get(out_trade_no, AttemptStatus.PENDING),
            channel_trade_no=f"T{out_trade_no}",
            amount=self.reported_amount or self.amounts.get(out_trade_no),
            accepted_at=datetime(2026, 2, 5, 2, 0).astimezone()
            if self.orders.get(out_trade_no) == AttemptStatus.SUCCEEDED
            else None,
        )

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        return self._result(out_trade_no)

    def close(self, out_trade_no: str, *, placed_at: datetime | None = None) -> None:
        if self.close_not_exist:
            raise ChannelDeclined("ORDER_NOT_EXIST")
        if self.pay_on_close:
            self.pay(out_trade_no)
        if self.orders.get(out_trade_no) == AttemptStatus.SUCCEEDED:
            raise ChannelDeclined("already_paid")
        self.orders[out_trade_no] = AttemptStatus.CLOSED

    def refund(
        self,
        *,
        out_trade_no: str,
        refund_no: str,
        amount: Decimal,
        reason: str,
        placed_at: datetime | None = None,
    ) -> RefundResult:
        self.refunds.append(out_trade_no)
        return RefundResult(refund_no=refund_no, succeeded=True)

    def parse_callback(self, callback: InboundCallback, *, now: datetime) -> TradeResult:
        raise NotImplementedError

    def callback_ack(self) -> CallbackAck:
        return CallbackAck(200, b"success", "text/plain")

    def fetch_settlement_file(self, day: date) -> list[SettlementRecord]:
        return []


class FakeChannels:
    """A channel factory for the routing services: one fake per channel name."""

    def __init__(self) -> None:
        self.by_name: dict[str, FakeChannel] = {}

    def __call__(self, name: str) -> FakeChannel:
        return self.by_name.setdefault(name, FakeChannel(name))
