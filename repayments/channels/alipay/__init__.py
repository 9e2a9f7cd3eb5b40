"""Alipay open-platform adapter: WAP checkout, trade query/close/refund, notify, bills.

Protocol summary (what this package relies on):

* Requests go to one gateway as a signed form: common parameters (``app_id``,
  ``method``, ``charset``, ``sign_type``, ``timestamp``, ``version``...) plus the
  business fields as JSON in ``biz_content``, signed SHA256withRSA ("RSA2")
  with the merchant's private key.
* Answers are JSON ``{"<method>_response": {...}, "sign": "..."}``; the
  signature covers the exact text of the ``*_response`` object, so it is
  checked on the raw substring, never on a re-serialisation.
* Async notifications are form posts signed by Alipay over every parameter
  except ``sign`` and ``sign_type`` (see :func:`sign_content`).

Failures are classified at this edge (see ``base``): a lost answer to a call
that moves money is *unknown*; a lost answer to a read or to an idempotent
close is merely *unavailable*.
"""

from repayments.channels.alipay.bills import parse_settlement_csv, parse_settlement_file
from repayments.channels.alipay.channel import AlipayChannel, AlipayConfig
from repayments.channels.alipay.protocol import (
    ALIPAY_TIME_FORMAT,
    HUABEI_FUND_CHANNEL,
    SHANGHAI,
    TRADE_STATUSES,
    sign_content,
)

__all__ = [
    "ALIPAY_TIME_FORMAT",
    "HUABEI_FUND_CHANNEL",
    "SHANGHAI",
    "TRADE_STATUSES",
    "AlipayChannel",
    "AlipayConfig",
    "parse_settlement_csv",
    "parse_settlement_file",
    "sign_content",
]
