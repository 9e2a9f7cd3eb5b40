"""The sandbox HTTP server: routing, faults, the ledger and the control API."""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from repayments.channels.sandbox.faults import Faults, faults_from
from repayments.channels.sandbox.ledger import Ledger, SandboxOrder
from repayments.channels.sandbox.notifier import Notifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    raw_query: str = ""  # exactly as sent: some protocols sign it

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


@dataclass
class SandboxResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @classmethod
    def json(cls, data: Any, status: int = 200) -> SandboxResponse:
        return cls(status, json.dumps(data, ensure_ascii=False).encode())

    @classmethod
    def text(
        cls, text: str, status: int = 200, content_type: str = "text/plain"
    ) -> SandboxResponse:
        return cls(status, text.encode(), {"Content-Type": f"{content_type}; charset=utf-8"})


class SimulatedChannel(Protocol):
    """The server side of one channel protocol."""

    name: str

    def handle(self, request: SandboxRequest) -> SandboxResponse: ...

    def notification(self, order: SandboxOrder) -> tuple[bytes, dict[str, str]]: ...

    def acknowledged(self, status: int, body: bytes) -> bool: ...


class Sandbox:
    """Shared state of the simulated channels: ledger, faults and callback delivery."""

    def __init__(self, base_url: str = "http://127.0.0.1:8100") -> None:
        self.base_url = base_url.rstrip("/")
        self.ledger = Ledger()
        self.notifier = Notifier()
        self.channels: dict[str, SimulatedChannel] = {}
        self.faults: dict[str, Faults] = {}

    def register(self, channel: SimulatedChannel) -> None:
        self.channels[channel.name] = channel
        self.faults[channel.name] = Faults()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def pay(self, order: SandboxOrder, *, funding: str = "") -> bool:
        """The payer completes an order: record it and tell the merchant."""
        order.funding = funding or order.funding
        if not self.ledger.settle(order, status="succeeded", at=self.now()):
            return False
        self.ledger.count(f"{order.channel}.charged")
        self.notify(order)
        return True

    def decline(self, order: SandboxOrder, code: str) -> None:
        if self.ledger.settle(order, status="failed", at=self.now(), code=code):
            self.notify(order)

    def notify(self, order: SandboxOrder) -> None:
        if not order.notify_url:
            return  # a batch line: its result is read with the batch query
        channel = self.channels[order.channel]
        self.notifier.send(
            url=order.notify_url,
            # Signed only if it is going to be sent: a dropped callback costs nothing.
            message=lambda: channel.notification(order),
            accepted=channel.acknowledged,
            faults=self.faults[order.channel],
        )

    def hang(self, channel: str) -> None:
        """Answer too late for the merchant's time-out (after the money moved)."""
        time.sleep(self.faults[channel].hang_ms / 1000)

    def control(self, request: SandboxRequest) -> SandboxResponse:
        parts = [p for p in request.path.split("/") if p][1:]
        if request.method == "GET" and not parts:
            return SandboxResponse.text(self._control_page(), content_type="text/html")
        if request.method == "GET" and parts == ["state"]:
            return SandboxResponse.json(self.state())
        if request.method == "POST" and parts == ["reset"]:
            self.ledger.reset()
            self.faults = {name: Faults() for name in self.channels}
            return SandboxResponse.json({"reset": True})
        if request.method == "POST" and parts == ["release-callbacks"]:
            return SandboxResponse.json({"released": self.notifier.release_held()})
        if request.method == "POST" and len(parts) == 2 and parts[1] == "faults":
            return self._set_faults(parts[0], request.body)
        if request.method == "POST" and len(parts) == 3 and parts[1] == "pay":
            return self._pay_from_control(parts[0], parts[2], request.query.get("funding", ""))
        return SandboxResponse.json({"error": "unknown control path"}, 404)

    def _set_faults(self, channel: str, body: bytes) -> SandboxResponse:
        if channel not in self.channels:
            return SandboxResponse.json({"error": f"unknown channel {channel!r}"}, 404)
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("send a JSON object of faults")
            self.faults[channel] = faults_from(data, self.faults[channel])
        except ValueError as exc:
            return SandboxResponse.json({"error": str(exc)}, 400)
        return SandboxResponse.json(self.faults[channel].public())

    def _pay_from_control(self, channel: str, out_trade_no: str, funding: str) -> SandboxResponse:
        order = self.ledger.get(channel, out_trade_no)
        if order is None:
            return SandboxResponse.json({"error": "no such order"}, 404)
        return SandboxResponse.json({"paid": self.pay(order, funding=funding)})

    def state(self) -> dict[str, Any]:
        return {
            "requests": dict(self.ledger.requests),
            "callbacks": {"sent": self.notifier.sent, "acknowledged": self.notifier.acknowledged},
            "faults": {name: f.public() for name, f in self.faults.items()},
            "orders": {
                name: {
                    status: sum(1 for o in self.ledger.orders(name) if o.status == status)
                    for status in ("pending", "succeeded", "failed", "closed")
                }
                for name in self.channels
            },
        }

    def _control_page(self) -> str:
        state = html.escape(json.dumps(self.state(), indent=2, ensure_ascii=False))
        return (
            "<!doctype html><meta charset=utf-8><title>Channel sandbox</title>"
            "<h1>Channel sandbox</h1><p>POST /control/&lt;channel&gt;/faults with a JSON "
            "object, POST /control/&lt;channel&gt;/pay/&lt;out_trade_no&gt;, POST /control/reset, "
            f"POST /control/release-callbacks.</p><pre>{state}</pre>"
        )

    def dispatch(self, request: SandboxRequest) -> SandboxResponse:
        top = request.path.strip("/").split("/", 1)[0]
        if top == "control":
            return self.control(request)
        channel = self.channels.get(top)
        if channel is None:
            return SandboxResponse.json({"error": "not found"}, 404)
        faults = self.faults[top]
        self.ledger.count(f"{top}.requests")
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.down:
            return SandboxResponse.text("service unavailable", 503)
        return channel.handle(request)


def make_handler(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the body of an
        # answer on a kept-alive connection waits for the client's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = SandboxRequest(
                method=self.command,
                path=split.path,
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                headers=dict(self.headers.items()),
                body=self.rfile.read(length) if length else b"",
                raw_query=split.query,
            )
            try:
                response = sandbox.dispatch(request)
            except Exception:  # one bad request must not stop the sandbox
                logger.exception("sandbox error on %s %s", self.command, self.path)
                response = SandboxResponse.json({"error": "sandbox internal error"}, 500)
            self.send_response(response.status)
            for name, value in {
                **response.headers,
                "Content-Length": str(len(response.body)),
            }.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    return Handler


def serve(sandbox: Sandbox, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the sandbox (port 0 picks a free one); call serve_forever() on the result."""
    server = ThreadingHTTPServer((host, port), make_handler(sandbox))
    server.daemon_threads = True
    return server
