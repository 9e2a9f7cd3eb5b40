"""Building the configured provider for each channel from settings."""

from __future__ import annotations

from django.conf import settings

from notifications.providers.base import Provider
from notifications.providers.console import FileProvider


def provider_from_settings(channel: str) -> Provider | None:
    """``NOTIFY_SMS_PROVIDER`` / ``NOTIFY_PUSH_PROVIDER``: ``file`` (development) or ``off``."""
    choice = {"sms": settings.NOTIFY_SMS_PROVIDER, "push": settings.NOTIFY_PUSH_PROVIDER}.get(
        channel, "off"
    )
    if choice == "file":
        return FileProvider(
            name=f"file-{channel}",
            channel=channel,
            path=settings.VAR_DIR / "notifications" / f"{channel}.log",
        )
    return None
