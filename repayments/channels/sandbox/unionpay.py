"""The sandbox's UnionPay: ACP-style withholding that settles by itself and notifies."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

from repayments.channels.crypto import load_private_key, load_public_key
from repayments.channels.sandbox.app import Sandbox, SandboxRequest, SandboxResponse
from repayments.channels.sandbox.ledger import SandboxOrder
from repayments.channels.unionpay import (
    BACK_TRANS_PATH,
    BATCH_TRANS_PATH,
    FILE_TRANSFER_PATH,
    QUERY_PATH,
    TXN_BATCH,
    TXN_BATCH_QUERY,
    decode_batch_file,
    encode_batch_file,
    encode_form,
    fen_to_yuan,
    parse_form,
    sign_fields,
    txn_time,
    verify_fields,
    yuan_to_fen,
)

PREFIX = "/unionpay"
INSUFFICIENT_FUNDS = "64"
ORIGINAL_CODE = {"pending": "05", "succeeded": "00", "closed": "45"}


class SandboxUnionPay:
    name = "unionpay"

    def __init__(self, sandbox: Sandbox, *, keys_dir: Path, mer_id: str) -> None:
        self.sandbox = sandbox
        self.platform_key = load_private_key(keys_dir / "unionpay" / "platform_private.pem")
        self.merchant_key = load_public_key(keys_dir / "unionpay" / "merchant_public.pem")
        self.mer_id = mer_id

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        fields = parse_form(request.body)
        if not verify_fields(fields, self.merchant_key) or fields.get("merId") != self.mer_id:
            return self._answer(fields, respCode="11", respMsg="验证签名失败")
        if self.sandbox.faults[self.name].maintenance:
            return self._answer(fields, respCode="39", respMsg="系统维护 暂停受理")
        path = request.path.removeprefix(PREFIX)
        if path == FILE_TRANSFER_PATH:
            return self._file(fields)
        if path == QUERY_PATH:
            return self._query(fields)
        if path == BATCH_TRANS_PATH:
            if fields.get("txnType") == TXN_BATCH:
                return self._batch(fields)
            if fields.get("txnType") == TXN_BATCH_QUERY:
                return self._batch_query(fields)
            return self._answer(fields, respCode="10", respMsg="交易类型错误")
        if path != BACK_TRANS_PATH:
            return SandboxResponse.text("not found", 404)
        txn_type = fields.get("txnType")
        if txn_type == "11":
            return self._withhold(fields)
        if txn_type == "31":
            return self._cancel(fields)
        if txn_type == "04":
            return self._refund(fields)
        return self._answer(fields, respCode="10", respMsg="交易类型错误")

    def _withhold(self, fields: dict[str, str]) -> SandboxResponse:
        order = self._debit(
            fields["orderId"],
            fields["txnAmt"],
            card_token=fields.get("tokenPayData", ""),
            txn_time=fields["txnTime"],
            notify_url=fields.get("backUrl", ""),
        )
        faults = self.sandbox.faults[self.name]
        if faults.chance(faults.timeout_after_charge_rate):
            self.sandbox.hang(self.name)
        return self._answer(fields, respCode="00", respMsg="成功[0000000]", queryId=order.trade_no)

    def _debit(
        self, order_id: str, fen: str, *, card_token: str, txn_time: str, notify_url: str
    ) -> SandboxOrder:
        """Take one withholding; it settles by itself, its result decided now."""
        self.sandbox.ledger.count("unionpay.debits")
        order = self.sandbox.ledger.add(
            SandboxOrder(
                channel=self.name,
                out_trade_no=order_id,
                amount=fen_to_yuan(fen),
                notify_url=notify_url,
                trade_no=self.sandbox.ledger.next_trade_no("UP"),
                card_token=card_token,
                extra={"txnTime": txn_time},
            )
        )
        if order.status == "pending":
            faults = self.sandbox.faults[self.name]
            if faults.chance(faults.decline_rate):
                self.sandbox.decline(order, INSUFFICIENT_FUNDS)
            else:
                self.sandbox.pay(order)
        return order

    def _batch(self, fields: dict[str, str]) -> SandboxResponse:
        """批量代收: every line becomes an order of its own, settled at once; its
        result is read with the batch query (lines send no notification)."""
        try:
            rows = decode_batch_file(fields.get("fileContent", ""))
            lines = [(order_id, fen, token) for order_id, fen, token in rows]
            total = sum(yuan_to_fen(fen_to_yuan(fen)) for _, fen, _ in lines)
        except ValueError:
            return self._answer(fields, respCode="10", respMsg="批量文件格式错误")
        if fields.get("totalQty") != str(len(lines)) or fields.get("totalAmt") != str(total):
            return self._answer(fields, respCode="13", respMsg="批量文件与总笔数总金额不符")
        key = f"{fields.get('batchNo')}:{fields.get('txnTime')}"
        orders: list[SandboxOrder] = []
        # Taken before any line is debited: the same batch sent twice at once debits once.
        if not self.sandbox.ledger.add_batch(self.name, key, orders):
            return self._answer(fields, respCode="12", respMsg="重复批次")
        self.sandbox.ledger.count("unionpay.batches")
        for order_id, fen, token in lines:
            orders.append(
                self._debit(
                    order_id,
                    fen,
                    card_token=f"{{token={token}}}",
                    txn_time=fields["txnTime"],
                    notify_url="",
                )
            )
        faults = self.sandbox.faults[self.name]
        if faults.chance(faults.timeout_after_charge_rate):
            self.sandbox.hang(self.name)
        return self._answer(fields, respCode="00", respMsg="成功[0000000]")

    def _batch_query(self, fields: dict[str, str]) -> SandboxResponse:
        key = f"{fields.get('batchNo')}:{fields.get('txnTime')}"
        orders = self.sandbox.ledger.batch(self.name, key)
        if orders is None:
            return self._answer(fields, respCode="34", respMsg="查无此批次")
        rows = []
        for order in orders:
            trade = self._trade(order)
            rows.append(
                (
                    order.out_trade_no,
                    trade["txnAmt"],
                    trade["origRespCode"],
                    order.trade_no,
                    trade.get("traceTime", ""),
                )
            )
        return self._answer(
            fields, respCode="00", respMsg="成功", fileContent=encode_batch_file(rows)
        )

    def _query(self, fields: dict[str, str]) -> SandboxResponse:
        order = self.sandbox.ledger.get(self.name, fields.get("orderId", ""))
        # UnionPay finds an order by its number and its original txnTime.
        if order is None or order.extra.get("txnTime") != fields.get("txnTime"):
            return self._answer(fields, respCode="34", respMsg="查无此交易")
        return self._answer(fields, respCode="00", respMsg="成功", **self._trade(order))

    def _cancel(self, fields: dict[str, str]) -> SandboxResponse:
        original = fields.get("orderId", "").removesuffix("C")
        order = self.sandbox.ledger.get(self.name, original)
        if order is None or not self.sandbox.ledger.settle(
            order, status="closed", at=self.sandbox.now()
        ):
            return self._answer(fields, respCode="35", respMsg="原交易状态不正确")
        return self._answer(fields, respCode="00", respMsg="成功")

    def _refund(self, fields: dict[str, str]) -> SandboxResponse:
        order = next(
            (
                o
                for o in self.sandbox.ledger.orders(self.name)
                if o.trade_no == fields.get("origQryId")
            ),
            None,
        )
        amount = fen_to_yuan(fields.get("txnAmt", "0"))
        if order is None or order.status != "succeeded" or order.refunded + amount > order.amount:
            return self._answer(fields, respCode="35", respMsg="原交易状态不正确")
        if fields["orderId"] not in order.extra.get("refunds", "").split(","):
            order.refunded += amount
            order.extra["refunds"] = order.extra.get("refunds", "") + f",{fields['orderId']}"
            self.sandbox.ledger.count("unionpay.refunded")
        return self._answer(fields, respCode="00", respMsg="成功", queryId=f"R{order.trade_no}")

    def _file(self, fields: dict[str, str]) -> SandboxResponse:
        mmdd = fields.get("settleDate", "")
        faults = self.sandbox.faults[self.name]
        mismatches, missing = set(faults.settlement_mismatches), set(faults.settlement_missing)
        lines = []
        for order in self.sandbox.ledger.orders(self.name):
            if order.status != "succeeded" or order.paid_at is None:
                continue
            if txn_time(order.paid_at)[4:8] != mmdd or order.out_trade_no in missing:
                continue
            amount = order.amount + (Decimal("0.01") if order.out_trade_no in mismatches else 0)
            lines.append(f"{order.out_trade_no}|{order.trade_no}|11|{yuan_to_fen(amount)}|{mmdd}")
        for extra in faults.extra_settlement_lines():
            txn_type = "11" if extra.kind == "payment" else "04"
            fen = yuan_to_fen(extra.amount)
            lines.append(f"{extra.out_trade_no}|{extra.trade_no}|{txn_type}|{fen}|{mmdd}")
        content = base64.b64encode(("\n".join(lines) + "\n").encode()).decode()
        return self._answer(fields, respCode="00", respMsg="成功", fileContent=content)

    def _trade(self, order: SandboxOrder) -> dict[str, str]:
        code = ORIGINAL_CODE.get(order.status) or order.failure_code or INSUFFICIENT_FUNDS
        trade = {
            "orderId": order.out_trade_no,
            "txnAmt": str(yuan_to_fen(order.amount)),
            "txnTime": order.extra.get("txnTime", ""),
            "queryId": order.trade_no,
            "origRespCode": code,
            "origRespMsg": "成功" if code == "00" else "交易失败",
        }
        if order.paid_at:
            trade["traceTime"] = txn_time(order.paid_at)[4:]
        return trade

    def _answer(self, request: dict[str, str], **fields: str) -> SandboxResponse:
        echoed = {
            k: request[k]
            for k in (
                "version",
                "encoding",
                "signMethod",
                "txnType",
                "txnSubType",
                "bizType",
                "accessType",
                "merId",
                "orderId",
                "txnTime",
                "txnAmt",
                "batchNo",
            )
            if k in request
        }
        body = encode_form(sign_fields({**echoed, **fields}, self.platform_key))
        return SandboxResponse(
            200, body.encode(), {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
        )

    def notification(self, order: SandboxOrder) -> tuple[bytes, dict[str, str]]:
        faults = self.sandbox.faults[self.name]
        code = "00" if order.status == "succeeded" else order.failure_code
        fields = {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": "11",
            "txnSubType": "00",
            "bizType": "000501",
            "accessType": "0",
            "merId": self.mer_id,
            "orderId": order.out_trade_no,
            "txnTime": order.extra.get("txnTime", ""),
            "txnAmt": str(yuan_to_fen(order.amount)),
            "queryId": order.trade_no,
            "respCode": code,
            "respMsg": "成功" if code == "00" else "余额不足",
        }
        if order.paid_at:
            fields["traceTime"] = txn_time(order.paid_at)[4:]
        for old, new in faults.rename_field.items():
            if old in fields:
                fields[new] = fields.pop(old)
        body = encode_form(sign_fields(fields, self.platform_key))
        return body.encode(), {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200
