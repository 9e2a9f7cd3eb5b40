"""The interface every delivery provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    """The provider refused or could not be reached: try the next channel."""


@dataclass(frozen=True)
class Sent:
    message_id: str
    # True when the provider confirms delivery at once; False when a receipt follows.
    delivered: bool


@dataclass(frozen=True)
class Recipient:
    user_id: int
    phone: str
    push_token: str = ""


class Provider(Protocol):
    name: str
    channel: str  # "sms" | "push"

    def send(self, *, to: Recipient, text: str, reference: str) -> Sent:
        """Hand one message to the provider; ``reference`` is our notice id (idempotency)."""
        ...
