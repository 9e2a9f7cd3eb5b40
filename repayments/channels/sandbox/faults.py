"""Fault injection settings per simulated channel, set through the control API."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

SETTLEMENT_LINE_KINDS = ("payment", "refund")


@dataclass(frozen=True)
class ExtraSettlementLine:
    """A line the statement lists without a matching order in the sandbox's ledger."""

    out_trade_no: str
    amount: Decimal
    kind: str  # "payment" | "refund"
    trade_no: str


@dataclass
class Faults:
    down: bool = False  # refuse every call (HTTP 503 / system busy)
    maintenance: bool = False  # answer "under maintenance" (a definite refusal)
    latency_ms: int = 0  # added to every answer
    decline_rate: float = 0.0  # share of debits declined for insufficient funds
    timeout_after_charge_rate: float = 0.0  # charge, then answer too late
    hang_ms: int = 3000  # how late such an answer comes
    drop_callbacks: float = 0.0  # share of callbacks never sent
    duplicate_callbacks: float = 0.0  # share sent twice
    delay_callbacks_ms: int = 0
    reorder_callbacks: bool = False  # hold callbacks and send them newest first
    rename_field: dict[str, str] = field(default_factory=dict)  # {"old": "new"} in callbacks
    reformat_amount: bool = False  # send amounts in fen instead of yuan (format change)
    settlement_mismatches: list[str] = field(default_factory=list)  # out_trade_nos to alter
    # Statement faults for reconciliation: orders left out of the file (the channel
    # "lost" a payment we confirmed), and lines added to it (an order we never
    # placed, a repeated line, a refund) as {"out_trade_no", "amount", "kind"?,
    # "trade_no"?}; kind defaults to "payment".
    settlement_missing: list[str] = field(default_factory=list)
    settlement_extra_lines: list[dict[str, str]] = field(default_factory=list)
    auto_pay: bool = False  # wallet orders pay themselves (benchmarks, unattended runs)
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)  # noqa: S311 - simulation, not security

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.random.random() < rate

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def extra_settlement_lines(self) -> list[ExtraSettlementLine]:
        return [_extra_line(line) for line in self.settlement_extra_lines]


def _extra_line(line: dict[str, str]) -> ExtraSettlementLine:
    """:raises ValueError: for a line the statement could not carry."""
    if not isinstance(line, dict) or not line.get("out_trade_no"):
        raise ValueError("each settlement_extra_lines entry needs an out_trade_no")
    kind = line.get("kind", "payment")
    if kind not in SETTLEMENT_LINE_KINDS:
        raise ValueError(f"settlement line kind must be one of {SETTLEMENT_LINE_KINDS}")
    try:
        amount = Decimal(str(line.get("amount", ""))).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise ValueError(f"settlement line amount {line.get('amount')!r} is not yuan") from None
    number = str(line["out_trade_no"])
    return ExtraSettlementLine(number, amount, kind, str(line.get("trade_no") or f"X{number}"))


def faults_from(data: dict[str, Any], current: Faults) -> Faults:
    """Merge ``data`` into ``current``; unknown keys or wrong types raise ValueError."""
    merged = {**asdict(current), **data}
    known = {f.name: f for f in fields(Faults)}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(known))}")
        expected = type(getattr(current, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = float(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"fault {key!r} must be {expected.__name__}")
    faults = Faults(**merged)
    faults.extra_settlement_lines()  # refuse a malformed line now, not at download
    return faults
