"""The sandbox's Alipay: open-platform gateway, checkout page and trade_status_sync notifies."""

from __future__ import annotations

import html
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from repayments.channels.alipay import ALIPAY_TIME_FORMAT, SHANGHAI, sign_content
from repayments.channels.crypto import load_private_key, load_public_key, rsa2_sign, rsa2_verify
from repayments.channels.sandbox.app import Sandbox, SandboxRequest, SandboxResponse
from repayments.channels.sandbox.ledger import SandboxOrder

STATUS_TO_TRADE = {
    "pending": "WAIT_BUYER_PAY",
    "succeeded": "TRADE_SUCCESS",
    "closed": "TRADE_CLOSED",
    "failed": "TRADE_CLOSED",
}


class SandboxAlipay:
    name = "alipay"

    def __init__(self, sandbox: Sandbox, *, keys_dir: Path, app_id: str, seller_id: str) -> None:
        self.sandbox = sandbox
        self.platform_key = load_private_key(keys_dir / "alipay" / "platform_private.pem")
        self.merchant_key = load_public_key(keys_dir / "alipay" / "merchant_public.pem")
        self.app_id, self.seller_id = app_id, seller_id

    # --- gateway --------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        params = dict(request.query) if request.method == "GET" else request.form()
        if request.path.endswith("/checkout"):
            return self._checkout_pay(params)
        if request.path.endswith("/bill"):
            return self._bill(params.get("date", ""))
        message = sign_content(params, include_sign_type=True).encode()
        if not rsa2_verify(self.merchant_key, message, params.get("sign", "")):
            return self._answer(
                "error",
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"},
            )
        method = params.get("method", "")
        biz = json.loads(params.get("biz_content") or "{}")
        if self.sandbox.faults[self.name].maintenance:
            return self._answer(
                method,
                {
                    "code": "20000",
                    "msg": "Service Currently Unavailable",
                    "sub_code": "aop.SERVICE_MAINTENANCE",
                },
            )
        handlers = {
            "alipay.trade.wap.pay": lambda: self._wap_pay(params, biz),
            "alipay.trade.query": lambda: self._query(method, biz),
            "alipay.trade.close": lambda: self._close(method, biz),
            "alipay.trade.refund": lambda: self._refund(method, biz),
            "alipay.data.dataservice.bill.downloadurl.query": lambda: self._bill_url(method, biz),
        }
        handler = handlers.get(method)
        if handler is None:
            return self._answer(method, {"code": "40004", "sub_code": "isv.invalid-method"})
        return handler()

    def _wap_pay(self, params: dict[str, str], biz: dict[str, Any]) -> SandboxResponse:
        # Alipay creates the trade when the payer opens this page.
        order = self.sandbox.ledger.add(
            SandboxOrder(
                channel=self.name,
                out_trade_no=biz["out_trade_no"],
                amount=Decimal(biz["total_amount"]),
                notify_url=params.get("notify_url", ""),
                trade_no=self.sandbox.ledger.next_trade_no("2026"),
                extra={"return_url": params.get("return_url", "")},
            )
        )
        if self.sandbox.faults[self.name].auto_pay:
            self.sandbox.pay(order)
        return SandboxResponse.text(self._checkout_page(order), content_type="text/html")

    def _checkout_page(self, order: SandboxOrder) -> str:
        no = html.escape(order.out_trade_no)
        return (
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>支付宝沙箱收银台</title><h1>支付宝 · 沙箱</h1><p>订单 {no}</p>"
            f"<p>金额 ¥{order.amount:.2f}</p>"
            "<form method=post action='/alipay/checkout'>"
            f"<input type=hidden name=out_trade_no value='{no}'>"
            "<button name=funding value=''>余额支付</button> "
            "<button name=funding value=PCREDIT>花呗支付</button></form>"
        )

    def _checkout_pay(self, params: dict[str, str]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, params.get("out_trade_no", ""))
        if order is None:
            return SandboxResponse.text("no such order", 404)
        self.sandbox.pay(order, funding=params.get("funding", ""))
        back = order.extra.get("return_url")
        if back:
            return SandboxResponse(302, b"", {"Location": back})
        return SandboxResponse.text("支付成功 / paid", content_type="text/html")

    def _query(self, method: str, biz: dict[str, Any]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, biz.get("out_trade_no", ""))
        if order is None:
            return self._answer(
                method,
                {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"},
            )
        fields = {"code": "10000", "msg": "Success", **self._trade_fields(order)}
        if order.paid_at:
            fields["send_pay_date"] = _alipay_time(order.paid_at)
        if order.funding:
            fields["fund_bill_list"] = [
                {"fund_channel": order.funding, "amount": f"{order.amount:.2f}"}
            ]
        return self._answer(method, fields)

    def _close(self, method: str, biz: dict[str, Any]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, biz.get("out_trade_no", ""))
        if order is None:
            return self._answer(method, {"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"})
        if not self.sandbox.ledger.settle(order, status="closed", at=self.sandbox.now()):
            return self._answer(method, {"code": "40004", "sub_code": "ACQ.TRADE_STATUS_ERROR"})
        return self._answer(
            method, {"code": "10000", "msg": "Success", "out_trade_no": order.out_trade_no}
        )

    def _refund(self, method: str, biz: dict[str, Any]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, biz.get("out_trade_no", ""))
        amount = Decimal(biz.get("refund_amount", "0"))
        if order is None or order.status != "succeeded" or order.refunded + amount > order.amount:
            return self._answer(method, {"code": "40004", "sub_code": "ACQ.TRADE_STATUS_ERROR"})
        done = order.extra.setdefault("refunds", "")
        fund_change = "N" if biz["out_request_no"] in done.split(",") else "Y"
        if fund_change == "Y":
            order.refunded += amount
            order.extra["refunds"] = f"{done},{biz['out_request_no']}"
            self.sandbox.ledger.count("alipay.refunded")
        return self._answer(
            method,
            {
                "code": "10000",
                "msg": "Success",
                "trade_no": order.trade_no,
                "fund_change": fund_change,
            },
        )

    def _bill_url(self, method: str, biz: dict[str, Any]) -> SandboxResponse:
        url = f"{self.sandbox.base_url}/alipay/bill?date={biz.get('bill_date', '')}"
        return self._answer(method, {"code": "10000", "msg": "Success", "bill_download_url": url})

    def _bill(self, day: str) -> SandboxResponse:
        faults = self.sandbox.faults[self.name]
        mismatches, missing = set(faults.settlement_mismatches), set(faults.settlement_missing)
        lines = ["#支付宝业务明细查询", "支付宝交易号,商户订单号,业务类型,订单金额(元),完成时间"]
        for order in self.sandbox.ledger.orders(self.name):
            if order.paid_at is None or _alipay_time(order.paid_at)[:10] != day:
                continue
            if order.out_trade_no in missing:
                continue
            amount = order.amount + (Decimal("0.01") if order.out_trade_no in mismatches else 0)
            lines.append(
                f"{order.trade_no}\t,{order.out_trade_no}\t,交易,{amount:.2f},{_alipay_time(order.paid_at)}"
            )
        for extra in faults.extra_settlement_lines():
            business = "交易" if extra.kind == "payment" else "退款"
            lines.append(
                f"{extra.trade_no}\t,{extra.out_trade_no}\t,{business},"
                f"{extra.amount:.2f},{day} 12:00:00"
            )
        lines.append("#业务明细列表结束")
        return SandboxResponse.text("\n".join(lines) + "\n", content_type="text/csv")

    def _answer(self, method: str, fields: dict[str, Any]) -> SandboxResponse:
        """Sign the exact text of the response object, as Alipay does."""
        key = "error_response" if method == "error" else method.replace(".", "_") + "_response"
        text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.platform_key, text.encode())
        body = f'{{"{key}":{text},"sign":"{sign}"}}'
        if self.sandbox.faults[self.name].chance(
            self.sandbox.faults[self.name].timeout_after_charge_rate
        ):
            self.sandbox.hang(self.name)
        return SandboxResponse(
            200, body.encode(), {"Content-Type": "application/json;charset=utf-8"}
        )

    # --- notifications --------------------------------------------------------

    def _trade_fields(self, order: SandboxOrder) -> dict[str, Any]:
        return {
            "trade_no": order.trade_no,
            "out_trade_no": order.out_trade_no,
            "trade_status": STATUS_TO_TRADE[order.status],
            "total_amount": f"{order.amount:.2f}",
        }

    def notification(self, order: SandboxOrder) -> tuple[bytes, dict[str, str]]:
        faults = self.sandbox.faults[self.name]
        params = {
            "notify_time": _alipay_time(self.sandbox.now()),
            "notify_type": "trade_status_sync",
            "notify_id": f"N{order.trade_no}{order.status}",
            "app_id": self.app_id,
            "seller_id": self.seller_id,
            "charset": "utf-8",
            "version": "1.0",
            **{k: str(v) for k, v in self._trade_fields(order).items()},
        }
        if order.paid_at:
            params["gmt_payment"] = _alipay_time(order.paid_at)
        if order.funding:
            params["fund_bill_list"] = json.dumps(
                [{"amount": f"{order.amount:.2f}", "fundChannel": order.funding}]
            )
        if faults.reformat_amount:
            params["total_amount"] = str(int(order.amount * 100))
        for old, new in faults.rename_field.items():
            if old in params:
                params[new] = params.pop(old)
        params["sign"] = rsa2_sign(self.platform_key, sign_content(params).encode())
        params["sign_type"] = "RSA2"
        return urlencode(params).encode(), {
            "Content-Type": "application/x-www-form-urlencoded;charset=utf-8"
        }

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and body == b"success"


def _alipay_time(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime(ALIPAY_TIME_FORMAT)
