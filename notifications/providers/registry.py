"""Building the configured provider for each channel from settings."""

from __future__ import annotations

from django.conf import settings

from notifications.providers.aliyun_sms import AliyunSmsConfig, AliyunSmsProvider
from notifications.providers.base import Provider
from notifications.providers.console import FileProvider
from notifications.providers.fcm import FcmConfig, FcmProvider, load_service_account
from notifications.receipts import SkipAfterUndeliveredReceipt


def provider_from_settings(channel: str) -> Provider | None:
    """``NOTIFY_SMS_PROVIDER`` (file, aliyun, off) / ``NOTIFY_PUSH_PROVIDER`` (file, fcm, off).

    :raises ValueError: the FCM service-account file cannot be read.
    """
    choice = {"sms": settings.NOTIFY_SMS_PROVIDER, "push": settings.NOTIFY_PUSH_PROVIDER}.get(
        channel, "off"
    )
    if choice == "file":
        return FileProvider(
            name=f"file-{channel}",
            channel=channel,
            path=settings.VAR_DIR / "notifications" / f"{channel}.log",
        )
    if channel == "sms" and choice == "aliyun":
        return SkipAfterUndeliveredReceipt(aliyun_sms_from_settings())
    if channel == "push" and choice == "fcm":
        return fcm_from_settings()
    return None


def aliyun_sms_from_settings() -> AliyunSmsProvider:
    return AliyunSmsProvider(
        AliyunSmsConfig(
            endpoint=settings.ALIYUN_SMS_ENDPOINT,
            access_key_id=settings.ALIYUN_SMS_ACCESS_KEY_ID,
            access_key_secret=settings.ALIYUN_SMS_ACCESS_KEY_SECRET,
            sign_name=settings.ALIYUN_SMS_SIGN_NAME,
            region=settings.ALIYUN_SMS_REGION,
            template_codes=settings.ALIYUN_SMS_TEMPLATE_CODES,
            timeout=settings.NOTIFY_PROVIDER_TIMEOUT_SECONDS,
        )
    )


def fcm_from_settings() -> FcmProvider:
    account = load_service_account(settings.FCM_SERVICE_ACCOUNT_PATH)
    return FcmProvider(
        FcmConfig(
            account=account,
            project_id=settings.FCM_PROJECT_ID or account.project_id,
            api_url=settings.FCM_API_URL,
            token_url=settings.FCM_TOKEN_URL,
            timeout=settings.NOTIFY_PROVIDER_TIMEOUT_SECONDS,
        )
    )
