"""Fault injection settings per simulated channel, set through the control API."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any


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
    auto_pay: bool = False  # wallet orders pay themselves (benchmarks, unattended runs)
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)  # noqa: S311 - simulation, not security

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.random.random() < rate

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    return Faults(**merged)
