"""The interface every delivery provider implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


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

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        """Hand one message to the provider; ``reference`` is our notice id (idempotency).

        ``text`` is the notice as we rendered it. Providers that send from their
        own approved templates (Chinese SMS gateways) use ``kind`` to pick the
        template and ``params`` to fill it instead.
        """
        ...
