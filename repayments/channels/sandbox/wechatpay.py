"""The sandbox's WeChat Pay: API v3 endpoints and encrypted, signed notifications."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from repayments.channels.crypto import (
    aes_gcm_encrypt,
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
)
from repayments.channels.sandbox.app import Sandbox, SandboxRequest, SandboxResponse
from repayments.channels.sandbox.ledger import SandboxOrder
from repayments.channels.wechatpay import (
    parse_authorization_header,
    request_message,
    response_message,
    yuan_to_fen,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PLATFORM_SERIAL = "SANDBOXPLATFORM0001"
STATUS_TO_STATE = {
    "pending": "NOTPAY",
    "succeeded": "SUCCESS",
    "closed": "CLOSED",
    "failed": "PAYERROR",
}
PREFIX = "/wechatpay"


class SandboxWechatPay:
    name = "wechatpay"

    def __init__(
        self, sandbox: Sandbox, *, keys_dir: Path, mchid: str, appid: str, apiv3_key: str
    ) -> None:
        self.sandbox = sandbox
        self.platform_key = load_private_key(keys_dir / "wechatpay" / "platform_private.pem")
        self.merchant_key = load_public_key(keys_dir / "wechatpay" / "merchant_public.pem")
        self.mchid, self.appid = mchid, appid
        self.apiv3_key = apiv3_key.encode()

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path.removeprefix(PREFIX)
        if path == "/bill/download":
            return SandboxResponse.text(
                self._bill(request.query.get("date", "")), content_type="text/csv"
            )
        if not self._authorised(request):
            return self._answer(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        if self.sandbox.faults[self.name].maintenance:
            return self._answer(500, {"code": "SYSTEM_ERROR", "message": "系统维护中"})
        parts = [p for p in path.split("/") if p]
        if parts == ["v3", "pay", "transactions", "native"] and request.method == "POST":
            return self._create(json.loads(request.body))
        if parts[:4] == ["v3", "pay", "transactions", "out-trade-no"] and len(parts) >= 5:
            order = self.sandbox.ledger.get(self.name, parts[4])
            if order is None:
                return self._answer(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
            return (
                self._close(order)
                if parts[5:] == ["close"]
                else self._answer(200, self._transaction(order))
            )
        if parts == ["v3", "refund", "domestic", "refunds"]:
            return self._refund(json.loads(request.body))
        if parts == ["v3", "bill", "tradebill"]:
            return self._bill_url(request.query.get("bill_date", ""))
        return self._answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no such API"})

    def _authorised(self, request: SandboxRequest) -> bool:
        fields = parse_authorization_header(request.headers.get("Authorization", ""))
        if fields.get("mchid") != self.mchid:
            return False
        target = request.path + (f"?{request.raw_query}" if request.raw_query else "")
        message = request_message(
            request.method, target, fields["timestamp"], fields["nonce_str"], request.body
        )
        return rsa2_verify(self.merchant_key, message, fields.get("signature", ""))

    def _create(self, body: dict[str, Any]) -> SandboxResponse:
        order = self.sandbox.ledger.add(
            SandboxOrder(
                channel=self.name,
                out_trade_no=body["out_trade_no"],
                amount=(Decimal(body["amount"]["total"]) / 100).quantize(Decimal("0.01")),
                notify_url=body["notify_url"],
                trade_no=self.sandbox.ledger.next_trade_no("4200"),
            )
        )
        if self.sandbox.faults[self.name].auto_pay:
            self.sandbox.pay(order)
        return self._answer(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={order.trade_no}"})

    def _close(self, order: SandboxOrder) -> SandboxResponse:
        if order.status == "succeeded":
            return self._answer(400, {"code": "ORDER_PAID", "message": "订单已支付"})
        self.sandbox.ledger.settle(order, status="closed", at=self.sandbox.now())
        # WeChat Pay signs every answer, the empty 204 included.
        return SandboxResponse(204, b"", self._signed_headers(b""))

    def _refund(self, body: dict[str, Any]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, body.get("out_trade_no", ""))
        if order is None or order.status != "succeeded":
            return self._answer(400, {"code": "INVALID_REQUEST", "message": "订单状态不允许退款"})
        if body["out_refund_no"] not in order.extra.get("refunds", "").split(","):
            order.refunded += (Decimal(body["amount"]["refund"]) / 100).quantize(Decimal("0.01"))
            order.extra["refunds"] = order.extra.get("refunds", "") + f",{body['out_refund_no']}"
            self.sandbox.ledger.count("wechatpay.refunded")
        return self._answer(
            200,
            {
                "refund_id": f"5030{order.trade_no}",
                "out_refund_no": body["out_refund_no"],
                "status": "SUCCESS",
            },
        )

    def _bill_url(self, day: str) -> SandboxResponse:
        text = self._bill(day).encode()
        return self._answer(
            200,
            {
                "download_url": f"{self.sandbox.base_url}{PREFIX}/bill/download?date={day}",
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(text, usedforsecurity=False).hexdigest(),
            },
        )

    def _bill(self, day: str) -> str:
        faults = self.sandbox.faults[self.name]
        mismatches, missing = set(faults.settlement_mismatches), set(faults.settlement_missing)
        rows = ["交易时间,公众账号ID,商户号,微信订单号,商户订单号,交易状态,应结订单金额,退款金额"]
        for order in self.sandbox.ledger.orders(self.name):
            if (
                order.paid_at is None
                or order.paid_at.astimezone(SHANGHAI).date().isoformat() != day
                or order.out_trade_no in missing
            ):
                continue
            amount = order.amount + (Decimal("0.01") if order.out_trade_no in mismatches else 0)
            paid = order.paid_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
            rows.append(
                f"`{paid},`{self.appid},`{self.mchid},`{order.trade_no},`{order.out_trade_no},`SUCCESS,`{amount:.2f},`0.00"
            )
        for extra in faults.extra_settlement_lines():
            state, paid_amount, refunded = (
                ("SUCCESS", extra.amount, Decimal("0.00"))
                if extra.kind == "payment"
                else ("REFUND", Decimal("0.00"), extra.amount)
            )
            rows.append(
                f"`{day} 12:00:00,`{self.appid},`{self.mchid},`{extra.trade_no},"
                f"`{extra.out_trade_no},`{state},`{paid_amount:.2f},`{refunded:.2f}"
            )
        rows.append("总交易单数,应结订单总金额")
        return "\n".join(rows) + "\n"

    def _transaction(self, order: SandboxOrder) -> dict[str, Any]:
        data: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.trade_no,
            "trade_type": "NATIVE",
            "trade_state": STATUS_TO_STATE[order.status],
            "trade_state_desc": STATUS_TO_STATE[order.status],
            "bank_type": order.funding or "OTHERS",
            "amount": {"total": yuan_to_fen(order.amount), "currency": "CNY"},
        }
        if order.paid_at:
            data["success_time"] = order.paid_at.astimezone(SHANGHAI).isoformat(timespec="seconds")
        return data

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = rsa2_sign(self.platform_key, response_message(timestamp, nonce, body))
        return {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": PLATFORM_SERIAL,
        }

    def _answer(self, status: int, data: dict[str, Any]) -> SandboxResponse:
        body = json.dumps(data, ensure_ascii=False).encode()
        faults = self.sandbox.faults[self.name]
        if faults.chance(faults.timeout_after_charge_rate):
            self.sandbox.hang(self.name)
        return SandboxResponse(status, body, self._signed_headers(body))

    def notification(self, order: SandboxOrder) -> tuple[bytes, dict[str, str]]:
        faults = self.sandbox.faults[self.name]
        transaction = self._transaction(order)
        for old, new in faults.rename_field.items():
            if old in transaction:
                transaction[new] = transaction.pop(old)
        nonce = secrets.token_hex(6)
        event = {
            "id": f"EV-{order.trade_no}-{order.status}",
            "create_time": datetime.now(SHANGHAI).isoformat(timespec="seconds"),
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "summary": "支付成功",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "original_type": "transaction",
                "associated_data": "transaction",
                "nonce": nonce,
                "ciphertext": aes_gcm_encrypt(
                    self.apiv3_key, nonce, json.dumps(transaction).encode(), "transaction"
                ),
            },
        }
        body = json.dumps(event, ensure_ascii=False).encode()
        return body, self._signed_headers(body)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status in (200, 204)
