"""Assembling the sandbox with every simulated channel, from Django settings."""

from __future__ import annotations

from django.conf import settings

from repayments.channels.sandbox.alipay import SandboxAlipay
from repayments.channels.sandbox.app import Sandbox


def build_sandbox(base_url: str) -> Sandbox:
    """A sandbox whose keys and identifiers mirror what the portal's adapters expect."""
    sandbox = Sandbox(base_url)
    sandbox.register(
        SandboxAlipay(
            sandbox,
            keys_dir=settings.KEYS_DIR,
            app_id=settings.ALIPAY_APP_ID,
            seller_id=settings.ALIPAY_SELLER_ID,
        )
    )
    return sandbox
