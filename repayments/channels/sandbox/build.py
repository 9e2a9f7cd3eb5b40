"""Assembling the sandbox with every simulated channel, from Django settings."""

from __future__ import annotations

from django.conf import settings

from notifications.sandbox_sms import RECEIPT_PATH, SandboxSmsGateway
from repayments.channels.sandbox.alipay import SandboxAlipay
from repayments.channels.sandbox.app import Sandbox, SandboxResponse
from repayments.channels.sandbox.unionpay import SandboxUnionPay
from repayments.channels.sandbox.wechatpay import SandboxWechatPay


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
    apiv3 = settings.KEYS_DIR / "wechatpay" / "apiv3.key"
    sandbox.register(
        SandboxWechatPay(
            sandbox,
            keys_dir=settings.KEYS_DIR,
            mchid=settings.WECHATPAY_MCHID,
            appid=settings.WECHATPAY_APPID,
            apiv3_key=apiv3.read_text().strip(),
        )
    )
    sandbox.register(
        SandboxUnionPay(sandbox, keys_dir=settings.KEYS_DIR, mer_id=settings.UNIONPAY_MER_ID)
    )
    # Not a payment channel: the SMS gateway stand-in, served under /aliyun-sms/.
    sandbox.register(
        SandboxSmsGateway(
            respond=SandboxResponse,
            access_key_id=settings.ALIYUN_SMS_ACCESS_KEY_ID,
            access_key_secret=settings.ALIYUN_SMS_ACCESS_KEY_SECRET,
            receipt_url=f"{settings.PORTAL_BASE_URL}{RECEIPT_PATH}",
        )
    )
    return sandbox
