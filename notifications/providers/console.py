"""Development providers: messages are appended to a file (and the log), never sent."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from notifications.providers.base import ProviderError, Recipient, Sent

logger = logging.getLogger(__name__)
_lock = threading.Lock()


class FileProvider:
    """Writes each message as one JSON line; delivery is immediate."""

    def __init__(self, *, name: str, channel: str, path: Path) -> None:
        self.name = name
        self.channel = channel
        self.path = path

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        del params  # the rendered text is what a developer wants to read
        if self.channel == "sms" and not to.phone:
            raise ProviderError("no phone number")
        if self.channel == "push" and not to.push_token:
            raise ProviderError("no device registered for push")
        line = json.dumps(
            {"ref": reference, "kind": kind, "to": to.phone or to.push_token, "text": text},
            ensure_ascii=False,
        )
        with _lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        logger.info("%s to user %s: %s", self.channel, to.user_id, text)
        return Sent(message_id=f"{self.name}-{reference}", delivered=True)
