"""Serve the channel sandbox (Alipay, WeChat Pay, UnionPay stand-ins) over HTTP."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from repayments.channels.sandbox.app import serve
from repayments.channels.sandbox.build import build_sandbox


class Command(BaseCommand):
    help = "Run the local payment-channel sandbox; its control API is under /control/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        call_command("generate_channel_keys", verbosity=0)  # keeps existing keys
        server = serve(build_sandbox(f"http://{host}:{port}"), host, port)
        self.stdout.write(f"channel sandbox on http://{host}:{server.server_port}/control/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.shutdown()
