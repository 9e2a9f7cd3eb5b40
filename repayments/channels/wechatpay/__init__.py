"""WeChat Pay API v3 adapter: Native (QR code) orders, query, close, refund, notify, bills.

The protocol, as this package speaks it:

- Every request is signed with the merchant private key (SHA256withRSA) over
  ``METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`` and sent as an ``Authorization:
  WECHATPAY2-SHA256-RSA2048 ...`` header naming our certificate serial.
- Every answer and notification is signed by WeChat Pay's platform key over
  ``timestamp\\nnonce\\nbody\\n`` in the ``Wechatpay-*`` headers. The body is the RAW
  bytes received; re-serialised JSON would not verify.
- A notification's ``resource`` is AES-256-GCM encrypted with the APIv3 key.
- Amounts are integer fen (``amount.total``); they convert exactly to yuan Decimals.
"""

from repayments.channels.wechatpay.bills import parse_trade_bill
from repayments.channels.wechatpay.channel import WechatPayChannel, WechatPayConfig
from repayments.channels.wechatpay.protocol import (
    TRADE_STATES,
    authorization_header,
    fen_to_yuan,
    parse_authorization_header,
    request_message,
    response_message,
    yuan_to_fen,
)

__all__ = [
    "TRADE_STATES",
    "WechatPayChannel",
    "WechatPayConfig",
    "authorization_header",
    "fen_to_yuan",
    "parse_authorization_header",
    "parse_trade_bill",
    "request_message",
    "response_message",
    "yuan_to_fen",
]
