"""The Alipay adapter: checkout, query, close, refund, notify and the daily bill."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from repayments.channels.alipay import protocol
from repayments.channels.alipay.bills import parse_settlement_file
from repayments.channels.alipay.protocol import (
    CODE_BUSINESS_FAILED,
    CODE_SUCCESS,
    SHANGHAI,
    alipay_time,
    check_gateway_code,
    describe_answer,
    form_params,
    sign_content,
    top_level_spans,
)
from repayments.channels.base import (
    DEFAULT_TIMEOUT_SECONDS,
    CallbackAck,
    CallbackRejected,
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    NextAction,
    OrderCreated,
    OrderRequest,
    RefundResult,
    SettlementRecord,
    TradeResult,
)
from repayments.channels.crypto import load_private_key, load_public_key, rsa2_sign, rsa2_verify
from repayments.channels.transport import request_never_sent
from repayments.domain.money import parse_amount
from repayments.domain.states import AttemptStatus


@dataclass(frozen=True)
class AlipayConfig:
    app_id: str
    seller_id: str
    gateway_url: str
    app_private_key_path: str
    alipay_public_key_path: str
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls) -> AlipayConfig:
        """Read the ``ALIPAY_*`` settings (imported here so the module stays Django-free)."""
        from django.conf import settings

        return cls(
            app_id=settings.ALIPAY_APP_ID,
            seller_id=settings.ALIPAY_SELLER_ID,
            gateway_url=settings.ALIPAY_GATEWAY_URL,
            app_private_key_path=str(settings.ALIPAY_APP_PRIVATE_KEY_PATH),
            alipay_public_key_path=str(settings.ALIPAY_PUBLIC_KEY_PATH),
            timeout=float(settings.CHANNEL_TIMEOUT_SECONDS),
        )


def _now_shanghai() -> datetime:
    return datetime.now(SHANGHAI)


class AlipayChannel:
    """:class:`~repayments.channels.base.PaymentChannel` for the Alipay open platform."""

    name = "alipay"

    def __init__(
        self, config: AlipayConfig, *, clock: Callable[[], datetime] = _now_shanghai
    ) -> None:
        self.config = config
        self._clock = clock

    # Keys are read on first use, not at construction, so building the adapter (in
    # a registry, at import time) never fails on a machine without the key files.
    @cached_property
    def _private_key(self) -> rsa.RSAPrivateKey:
        return load_private_key(self.config.app_private_key_path)

    @cached_property
    def _alipay_public_key(self) -> rsa.RSAPublicKey:
        return load_public_key(self.config.alipay_public_key_path)

    # --- checkout -------------------------------------------------------------

    def create_order(self, request: OrderRequest) -> OrderCreated:
        """Build the signed ``alipay.trade.wap.pay`` URL the borrower is redirected to.

        No HTTP call: Alipay creates the trade only when the borrower opens this
        page, so nothing can be lost here and the answer is always "pending".
        """
        amount = parse_amount(request.amount)
        biz: dict[str, str] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": f"{amount:.2f}",
            "subject": request.subject,
            "product_code": "QUICK_WAP_WAY",
        }
        if request.expires_at is not None:
            # Bounds how long the URL can still be paid, which matters because a
            # close before the page was opened finds no trade to close.
            biz["time_expire"] = alipay_time(request.expires_at)
        if request.return_url:
            biz["quit_url"] = request.return_url
        params = self._signed_params(
            "alipay.trade.wap.pay",
            biz,
            notify_url=request.notify_url,
            return_url=request.return_url,
        )
        separator = "&" if "?" in self.config.gateway_url else "?"
        url = f"{self.config.gateway_url}{separator}{urlencode(params)}"
        result = TradeResult(
            out_trade_no=request.out_trade_no,
            status=AttemptStatus.PENDING,
            amount=amount,
            raw={"method": "alipay.trade.wap.pay", "biz_content": biz},
        )
        return OrderCreated(result=result, next_action=NextAction("redirect", url))

    # --- server calls ---------------------------------------------------------

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        """``alipay.trade.query``: the channel's current view of one of our orders."""
        answer = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        if answer.get("code") == CODE_BUSINESS_FAILED:
            sub_code = str(answer.get("sub_code", ""))
            if sub_code == "ACQ.TRADE_NOT_EXIST":
                # Alipay creates the trade only when the borrower opens the checkout
                # page, so "not exist" means "not paid yet": the signed URL may still
                # be used until it expires. Whether to give up is the caller's call,
                # as only it knows the expiry and the borrower's session.
                return TradeResult(
                    out_trade_no=out_trade_no,
                    status=AttemptStatus.PENDING,
                    failure_code=sub_code,
                    failure_message=str(answer.get("sub_msg", "")),
                    raw=answer,
                )
            raise ChannelUnavailable(sub_code or CODE_BUSINESS_FAILED, describe_answer(answer))
        try:
            result = protocol.parse_trade(answer, paid_at_key="send_pay_date")
        except ValueError as exc:
            raise ChannelUnavailable("unparseable_response", str(exc)) from exc
        if result.out_trade_no != out_trade_no:
            raise ChannelUnavailable("unparseable_response", "answer is about another order")
        return result

    def close(self, out_trade_no: str, *, placed_at: datetime | None = None) -> None:
        """``alipay.trade.close``: make an unpaid order unpayable.

        :raises ChannelDeclined: ``already_paid`` when the trade is no longer
            waiting for payment, so it cannot be closed (query it to confirm).
        """
        answer = self._call("alipay.trade.close", {"out_trade_no": out_trade_no})
        if answer.get("code") == CODE_SUCCESS:
            return
        sub_code = str(answer.get("sub_code", ""))
        if sub_code == "ACQ.TRADE_NOT_EXIST":
            # The page was never opened, so there is nothing to close at Alipay; the
            # URL's time_expire bounds the rest, and a late payment is still
            # accepted by the state machine (closed -> succeeded).
            return
        if sub_code == "ACQ.TRADE_STATUS_ERROR":
            # Alipay gives this for any trade not in WAIT_BUYER_PAY: normally paid,
            # possibly already closed. Either way it must not be treated as closed
            # by us, and a query tells the two apart.
            raise ChannelDeclined("already_paid", describe_answer(answer))
        raise ChannelUnavailable(sub_code or CODE_BUSINESS_FAILED, describe_answer(answer))

    def refund(
        self,
        *,
        out_trade_no: str,
        refund_no: str,
        amount: Decimal,
        reason: str,
        placed_at: datetime | None = None,
    ) -> RefundResult:
        """``alipay.trade.refund``, idempotent on ``out_request_no`` = ``refund_no``
        (``placed_at`` is not needed: Alipay finds a trade by its number alone)."""
        del placed_at
        biz = {
            "out_trade_no": out_trade_no,
            "out_request_no": refund_no,
            "refund_amount": f"{parse_amount(amount):.2f}",
            "refund_reason": reason,
        }
        answer = self._call("alipay.trade.refund", biz, moves_money=True)
        if answer.get("code") == CODE_SUCCESS:
            # fund_change is "Y" when this call moved the money and "N" when the
            # same out_request_no had already been refunded: both mean refunded.
            return RefundResult(
                refund_no=refund_no,
                succeeded=True,
                # Alipay has no separate refund number: trade_no + out_request_no is it.
                channel_refund_no=str(answer.get("trade_no", "")),
            )
        sub_code = str(answer.get("sub_code", ""))
        if sub_code == "ACQ.SYSTEM_ERROR":
            # Alipay's instruction is to retry with the same out_request_no: the
            # refund may or may not have happened.
            raise ChannelOutcomeUnknown(sub_code, describe_answer(answer))
        return RefundResult(refund_no=refund_no, succeeded=False, failure_code=sub_code)

    def fetch_settlement_file(self, day: date) -> list[SettlementRecord]:
        """The trade bill for ``day``: ask for its download URL, fetch and parse it."""
        answer = self._call(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "trade", "bill_date": day.isoformat()},
        )
        if answer.get("code") != CODE_SUCCESS:
            # e.g. isp.bill_not_exist: daily bills appear after 10:00 the next day.
            code = str(answer.get("sub_code", "")) or CODE_BUSINESS_FAILED
            raise ChannelUnavailable(code, describe_answer(answer))
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or not url:
            raise ChannelUnavailable("unparseable_response", "no bill_download_url")
        try:
            # The URL is valid for only 30 s, so it is fetched at once.
            response = requests.get(url, timeout=self.config.timeout)
        except requests.RequestException as exc:
            raise ChannelUnavailable("bill_download_failed", str(exc)) from exc
        if response.status_code != 200:
            raise ChannelUnavailable("bill_download_failed", f"HTTP {response.status_code}")
        return parse_settlement_file(response.content)

    # --- notifications --------------------------------------------------------

    def parse_callback(self, callback: InboundCallback, *, now: datetime) -> TradeResult:
        """Verify and read an async notification (``trade_status_sync``).

        :raises CallbackRejected: not provably from Alipay about our app/seller.
        :raises CallbackUnparseable: verified, but its content is not understood.
        """
        # No freshness window, unlike WeChat Pay: Alipay resends the same notify
        # (same content, same signature) about 8 times over 25 h until it gets
        # "success", so an old timestamp is normal. Replays are harmless because
        # applying a status is idempotent, and the signature stops forgeries.
        del now
        params = form_params(callback.body)
        self._verify_notify(params)
        try:
            return protocol.parse_trade(params, paid_at_key="gmt_payment")
        except ValueError as exc:
            raise CallbackUnparseable(str(exc)) from exc

    def callback_ack(self) -> CallbackAck:
        # Exactly these 7 bytes; anything else makes Alipay resend.
        return CallbackAck(status=200, body=b"success", content_type="text/plain")

    def _verify_notify(self, params: Mapping[str, str]) -> None:
        """Signature first, then Alipay's required business checks (app and seller)."""
        sign_type = params.get("sign_type", "")
        if sign_type != "RSA2":
            # RSA (SHA1) is weaker and we never configure it: a downgrade is an attack.
            raise CallbackRejected(f"sign_type {sign_type!r} is not RSA2")
        signature = params.get("sign", "")
        message = sign_content(params).encode("utf-8")
        if not signature or not rsa2_verify(self._alipay_public_key, message, signature):
            raise CallbackRejected("signature does not verify with the Alipay public key")
        if params.get("app_id") != self.config.app_id:
            raise CallbackRejected(f"app_id {params.get('app_id')!r} is not ours")
        seller_id = params.get("seller_id", "")
        if seller_id and seller_id != self.config.seller_id:
            raise CallbackRejected(f"seller_id {seller_id!r} is not ours")

    # --- transport ------------------------------------------------------------

    def _signed_params(
        self,
        method: str,
        biz: Mapping[str, str],
        *,
        notify_url: str = "",
        return_url: str = "",
    ) -> dict[str, str]:
        """The common parameters plus ``biz_content``, signed with the merchant key."""
        params = {
            "app_id": self.config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": alipay_time(self._clock()),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        if notify_url:
            params["notify_url"] = notify_url
        if return_url:
            params["return_url"] = return_url
        message = sign_content(params, include_sign_type=True).encode("utf-8")
        params["sign"] = rsa2_sign(self._private_key, message)
        return params

    def _call(
        self, method: str, biz: Mapping[str, str], *, moves_money: bool = False
    ) -> dict[str, Any]:
        """POST one signed request; return its verified answer when code is 10000 or 40004.

        ``moves_money``: once the request may have reached Alipay, a lost or
        untrustworthy answer means the money may have moved (unknown). For reads
        and for close (repeating it is harmless) the same case is only
        "unavailable": nothing happened that a retry or a query cannot settle.
        """
        lost: type[ChannelError] = ChannelOutcomeUnknown if moves_money else ChannelUnavailable
        body = urlencode(self._signed_params(method, biz)).encode("ascii")
        try:
            response = requests.post(
                self.config.gateway_url,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            if request_never_sent(exc):
                raise ChannelUnavailable("unreachable", str(exc)) from exc
            raise lost("no_answer", str(exc)) from exc
        if response.status_code == 503:
            # 503 Service Unavailable: the gateway refused before processing
            # (maintenance, overload), so nothing happened and another channel is safe.
            raise ChannelUnavailable("service_unavailable", "HTTP 503")
        if response.status_code != 200:
            # A proxy or load balancer answered: whether Alipay got it is unknowable.
            raise lost("http_status", f"HTTP {response.status_code}")
        answer = self._verified_answer(method, response.content, lost)
        check_gateway_code(answer, lost)
        return answer

    def _verified_answer(
        self, method: str, content: bytes, lost: type[ChannelError]
    ) -> dict[str, Any]:
        """The ``*_response`` object, after checking Alipay's signature on its raw text."""
        try:
            spans = top_level_spans(content.decode("utf-8"))
        except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
            raise lost("unparseable_response", str(exc)) from exc
        # Gateway-level errors (bad app_id, bad signature...) come as error_response.
        raw = spans.get(method.replace(".", "_") + "_response") or spans.get("error_response")
        if raw is None:
            raise lost("unparseable_response", f"no {method} response object")
        signature = json.loads(spans.get("sign", '""'))
        message = raw.encode("utf-8")
        if not isinstance(signature, str) or not rsa2_verify(
            self._alipay_public_key, message, signature
        ):
            # Nothing in an unverified answer may be acted on; the text is kept
            # for the operator only.
            raise lost("bad_response_signature", f"unverified answer: {raw[:300]}")
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise lost("unparseable_response", "response object is not a JSON object")
        return answer
