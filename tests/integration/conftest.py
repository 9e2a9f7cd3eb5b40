"""Integration fixtures: the channel sandbox over real HTTP, and a callback receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import override_settings

from repayments.channels.sandbox.app import Sandbox, serve
from repayments.channels.sandbox.build import build_sandbox


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class CallbackReceiver:
    url: str
    answer: bytes = b"success"
    status: int = 200
    received: list[Received] = field(default_factory=list)
    # The receiver stands in for the portal at PORTAL_BASE_URL, so a browser the
    # checkout sends back (return_url) is forwarded to the live portal from here.
    browser_base: str = ""
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        for _ in range(count):
            if not self.arrived.acquire(timeout=timeout):
                raise AssertionError(f"expected {count} callbacks, got {len(self.received)}")
        return self.received


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    url: str
    receiver: CallbackReceiver

    def control(self, path: str, data: Any = None) -> dict[str, Any]:
        response = requests.post(f"{self.url}/control/{path}", json=data or {}, timeout=5)
        response.raise_for_status()
        return response.json()


def _receiver() -> tuple[ThreadingHTTPServer, CallbackReceiver]:
    receiver = CallbackReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.received.append(Received(body, dict(self.headers.items())))
            receiver.arrived.release()
            self.send_response(receiver.status)
            self.send_header("Content-Length", str(len(receiver.answer)))
            self.end_headers()
            self.wfile.write(receiver.answer)

        def do_GET(self) -> None:
            if not receiver.browser_base:
                self.send_error(404)
                return
            self.send_response(302)
            self.send_header("Location", receiver.browser_base + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/callbacks/"
    return server, receiver


@pytest.fixture(scope="session")
def session_channel_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys made once per session, without touching the global settings."""
    keys = tmp_path_factory.mktemp("keys")
    with override_settings(KEYS_DIR=keys):
        call_command("generate_channel_keys", verbosity=0)
    return keys


@pytest.fixture
def channel_keys(session_channel_keys: Path, settings: Any) -> Path:
    """The keys the sandbox and the adapters share, set for this test only.

    Setting the global KEYS_DIR for the whole session let a second instance of the
    fixture (the e2e suite imports it) point it at other keys than the ones the
    adapters were given, and every signature failed from then on.
    """
    settings.KEYS_DIR = session_channel_keys
    return session_channel_keys


@pytest.fixture
def running_sandbox(channel_keys: Path) -> Iterator[RunningSandbox]:
    receiver_server, receiver = _receiver()
    threading.Thread(target=receiver_server.serve_forever, daemon=True).start()
    sandbox = build_sandbox("http://127.0.0.1:0")
    server = serve(sandbox, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}"
    sandbox.base_url = url
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield RunningSandbox(sandbox, url, receiver)
    server.shutdown()
    receiver_server.shutdown()


@pytest.fixture
def sandbox_channels(running_sandbox: RunningSandbox, channel_keys: Path, settings: Any) -> Any:
    """Adapters configured against the running sandbox, as a routing channel factory."""
    from repayments.channels.alipay import AlipayChannel, AlipayConfig
    from repayments.channels.unionpay import UnionPayChannel, UnionPayConfig
    from repayments.channels.wechatpay import WechatPayChannel, WechatPayConfig

    settings.PORTAL_BASE_URL = running_sandbox.receiver.url.removesuffix("/callbacks/")
    url = running_sandbox.url
    adapters: dict[str, Any] = {
        "alipay": AlipayChannel(
            AlipayConfig(
                app_id=settings.ALIPAY_APP_ID,
                seller_id=settings.ALIPAY_SELLER_ID,
                gateway_url=f"{url}/alipay/gateway.do",
                app_private_key_path=str(channel_keys / "alipay" / "merchant_private.pem"),
                alipay_public_key_path=str(channel_keys / "alipay" / "platform_public.pem"),
                timeout=1.0,
            )
        ),
        "wechatpay": WechatPayChannel(
            WechatPayConfig(
                mchid=settings.WECHATPAY_MCHID,
                appid=settings.WECHATPAY_APPID,
                api_url=f"{url}/wechatpay",
                merchant_private_key_path=str(channel_keys / "wechatpay" / "merchant_private.pem"),
                cert_serial=settings.WECHATPAY_CERT_SERIAL,
                platform_public_key_path=str(channel_keys / "wechatpay" / "platform_public.pem"),
                apiv3_key=(channel_keys / "wechatpay" / "apiv3.key").read_text().strip(),
                timeout=1.0,
            )
        ),
        "unionpay": UnionPayChannel(
            UnionPayConfig(
                mer_id=settings.UNIONPAY_MER_ID,
                api_url=f"{url}/unionpay",
                merchant_private_key_path=str(channel_keys / "unionpay" / "merchant_private.pem"),
                platform_public_key_path=str(channel_keys / "unionpay" / "platform_public.pem"),
                timeout=1.0,
            )
        ),
    }
    return adapters.__getitem__


@dataclass
class PortalChannels:
    """The configured adapters (settings, not a factory) pointed at the sandbox, and a
    relay that hands each callback the sandbox sent to the portal's real endpoint."""

    sandbox: RunningSandbox
    client: Any
    relayed: int = 0

    def relay(self, expected: int = 0, timeout: float = 10.0) -> list[Any]:
        """Post every callback received so far (waiting for ``expected`` more) to
        ``/callbacks/<channel>/``, in arrival order; returns the responses."""
        if expected:
            self.sandbox.receiver.wait(expected, timeout=timeout)
        responses = []
        received = self.sandbox.receiver.received
        while self.relayed < len(received):
            item = received[self.relayed]
            self.relayed += 1
            channel = _channel_of(item)
            headers = {k: v for k, v in item.headers.items() if k.lower() != "content-length"}
            responses.append(
                self.client.generic(
                    "POST",
                    f"/callbacks/{channel}/",
                    data=item.body,
                    content_type=headers.pop("Content-Type", "application/octet-stream"),
                    headers=headers,
                )
            )
        return responses


def _channel_of(item: Received) -> str:
    if any(k.lower().startswith("wechatpay-") for k in item.headers):
        return "wechatpay"
    return "unionpay" if b"txnType=" in item.body else "alipay"


@pytest.fixture
def portal_channels(
    running_sandbox: RunningSandbox, channel_keys: Path, settings: Any, client: Any
) -> Iterator[PortalChannels]:
    """Point the portal's own channel settings at the running sandbox."""
    from repayments.services.routing import default_channel

    url = running_sandbox.url
    settings.PORTAL_BASE_URL = running_sandbox.receiver.url.removesuffix("/callbacks/")
    running_sandbox.receiver.browser_base = ""
    settings.CHANNEL_TIMEOUT_SECONDS = 2
    settings.ALIPAY_GATEWAY_URL = f"{url}/alipay/gateway.do"
    settings.ALIPAY_APP_PRIVATE_KEY_PATH = channel_keys / "alipay" / "merchant_private.pem"
    settings.ALIPAY_PUBLIC_KEY_PATH = channel_keys / "alipay" / "platform_public.pem"
    settings.WECHATPAY_API_URL = f"{url}/wechatpay"
    settings.WECHATPAY_PRIVATE_KEY_PATH = channel_keys / "wechatpay" / "merchant_private.pem"
    settings.WECHATPAY_PLATFORM_PUBLIC_KEY_PATH = channel_keys / "wechatpay" / "platform_public.pem"
    settings.WECHATPAY_APIV3_KEY = (channel_keys / "wechatpay" / "apiv3.key").read_text().strip()
    settings.UNIONPAY_API_URL = f"{url}/unionpay"
    settings.UNIONPAY_PRIVATE_KEY_PATH = channel_keys / "unionpay" / "merchant_private.pem"
    settings.UNIONPAY_PUBLIC_KEY_PATH = channel_keys / "unionpay" / "platform_public.pem"
    default_channel.cache_clear()
    yield PortalChannels(running_sandbox, client)
    default_channel.cache_clear()


@pytest.fixture
def page_renders(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Whole record pages actually rendered for the cache (cache misses), in order."""
    from portal.views import record as record_views

    rendered: list[Any] = []
    original = record_views._render_for_cache

    def counting(*args: Any) -> Any:
        rendered.append(page := original(*args))
        return page

    monkeypatch.setattr(record_views, "_render_for_cache", counting)
    return rendered
