"""Create development key pairs for each channel and its sandbox (never committed)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from repayments.channels.crypto import generate_key_pair

CHANNELS = ("alipay", "wechatpay", "unionpay")


class Command(BaseCommand):
    help = (
        "Write merchant and platform RSA key pairs for every channel into ANXIN_KEYS_DIR "
        "(var/keys), plus the WeChat Pay APIv3 key. Existing keys are kept unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="replace existing keys")

    def handle(self, *args: Any, force: bool = False, **options: Any) -> None:
        made = []
        for channel in CHANNELS:
            folder = settings.KEYS_DIR / channel
            for side in ("merchant", "platform"):
                private = folder / f"{side}_private.pem"
                if force or not private.exists():
                    generate_key_pair(private, folder / f"{side}_public.pem")
                    made.append(f"{channel}/{side}")
        apiv3 = settings.KEYS_DIR / "wechatpay" / "apiv3.key"
        if force or not apiv3.exists():
            apiv3.write_text(secrets.token_hex(16))  # 32 characters, as WeChat Pay issues
            apiv3.chmod(0o600)
            made.append("wechatpay/apiv3")
        self.stdout.write(f"keys in {settings.KEYS_DIR}: " + (", ".join(made) or "all present"))
