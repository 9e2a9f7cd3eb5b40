"""Delivering signed callbacks to the portal, with the faults a real channel shows."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from repayments.channels.sandbox.faults import Faults

logger = logging.getLogger(__name__)
RETRY_DELAYS = (1.0, 2.0, 4.0)  # real channels retry for hours; the sandbox keeps it short
# Released callbacks are due one after another, newest first; the step only orders them.
RELEASE_STEP = 0.001


@dataclass(order=True)
class _Pending:
    due: float
    serial: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    accepted: Callable[[int, bytes], bool] = field(compare=False)
    tries: int = field(default=0, compare=False)


class Notifier:
    """A background thread sending callbacks when due; retries until acknowledged."""

    def __init__(self) -> None:
        self._queue: list[_Pending] = []
        self._held: list[_Pending] = []
        self._serial = itertools.count()
        self._wake = threading.Condition()
        self.sent = 0
        self.acknowledged = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
        self._thread.start()

    def send(
        self,
        *,
        url: str,
        message: Callable[[], tuple[bytes, dict[str, str]]],
        accepted: Callable[[int, bytes], bool],
        faults: Faults,
    ) -> None:
        """Queue one callback, applying drop / duplicate / delay / reorder faults.

        ``message`` builds the signed body and headers; it is not called for a
        dropped callback.
        """
        if faults.chance(faults.drop_callbacks):
            return
        body, headers = message()
        copies = 2 if faults.chance(faults.duplicate_callbacks) else 1
        due = time.monotonic() + faults.delay_callbacks_ms / 1000
        with self._wake:
            for _ in range(copies):
                item = _Pending(due, next(self._serial), url, body, headers, accepted)
                if faults.reorder_callbacks:
                    self._held.append(item)
                else:
                    heapq.heappush(self._queue, item)
            self._wake.notify()

    def release_held(self) -> int:
        """Send held callbacks newest first (the reorder fault), as fast as they go."""
        with self._wake:
            held, self._held = self._held, []
            now = time.monotonic()
            for offset, item in enumerate(reversed(held)):
                item.due = now + offset * RELEASE_STEP
                heapq.heappush(self._queue, item)
            self._wake.notify()
        return len(held)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue or self._queue[0].due > time.monotonic():
                    timeout = self._queue[0].due - time.monotonic() if self._queue else None
                    self._wake.wait(timeout)
                item = heapq.heappop(self._queue)
            self._deliver(item)

    def _deliver(self, item: _Pending) -> None:
        self.sent += 1
        try:
            response = requests.post(item.url, data=item.body, headers=item.headers, timeout=10)
            if item.accepted(response.status_code, response.content):
                self.acknowledged += 1
                return
        except requests.RequestException as exc:
            logger.info("callback to %s failed: %s", item.url, exc)
        if item.tries < len(RETRY_DELAYS):
            item.due = time.monotonic() + RETRY_DELAYS[item.tries]
            item.tries += 1
            with self._wake:
                heapq.heappush(self._queue, item)
                self._wake.notify()
