"""The sandbox's own book of orders: what each simulated channel believes happened."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass
class SandboxOrder:
    channel: str
    out_trade_no: str
    amount: Decimal
    notify_url: str
    trade_no: str
    status: str = "pending"  # pending | succeeded | failed | closed
    paid_at: datetime | None = None
    failure_code: str = ""
    funding: str = ""
    refunded: Decimal = Decimal("0.00")
    card_token: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class Ledger:
    """Thread-safe orders by (channel, out_trade_no), plus counters tests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[tuple[str, str], SandboxOrder] = {}
        # Batches of orders sent as one file, by channel and the batch's own key.
        self._batches: dict[tuple[str, str], list[SandboxOrder]] = {}
        self.requests: dict[str, int] = {}
        self._serial = 0

    def count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1

    def next_trade_no(self, prefix: str) -> str:
        with self._lock:
            self._serial += 1
            return f"{prefix}{self._serial:012d}"

    def add(self, order: SandboxOrder) -> SandboxOrder:
        """Store a new order, or return the existing one (merchants retry creates)."""
        with self._lock:
            return self._orders.setdefault((order.channel, order.out_trade_no), order)

    def add_batch(self, channel: str, key: str, orders: list[SandboxOrder]) -> bool:
        """Remember a batch; False (and nothing stored) when its key is taken."""
        with self._lock:
            if (channel, key) in self._batches:
                return False
            self._batches[(channel, key)] = orders
            return True

    def batch(self, channel: str, key: str) -> list[SandboxOrder] | None:
        with self._lock:
            return self._batches.get((channel, key))

    def get(self, channel: str, out_trade_no: str) -> SandboxOrder | None:
        with self._lock:
            return self._orders.get((channel, out_trade_no))

    def orders(self, channel: str | None = None) -> list[SandboxOrder]:
        with self._lock:
            return [o for o in self._orders.values() if channel in (None, o.channel)]

    def settle(self, order: SandboxOrder, *, status: str, at: datetime, code: str = "") -> bool:
        """Move a pending order to a final status; False if it was already final."""
        with self._lock:
            if order.status != "pending":
                return False
            order.status, order.failure_code = status, code
            if status == "succeeded":
                order.paid_at = at
            return True

    def reset(self) -> None:
        with self._lock:
            self._orders.clear()
            self._batches.clear()
            self.requests.clear()
