"""Alipay open-platform adapter: WAP checkout, trade query/close/refund, notify, bills.

Protocol summary (what this module relies on):

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

from __future__ import annotations

import csv
import html
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

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
from repayments.domain.money import InvalidAmount, parse_amount
from repayments.domain.states import AttemptStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Alipay writes every time as Beijing wall-clock time in this one format.
ALIPAY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

CODE_SUCCESS = "10000"
CODE_BUSINESS_FAILED = "40004"
# "Service unavailable / unknown error": the request arrived and Alipay may have
# acted on it, so for a money-moving call it means "unknown", not "refused".
CODE_SERVICE_UNAVAILABLE = "20000"

TRADE_STATUSES: dict[str, AttemptStatus] = {
    "WAIT_BUYER_PAY": AttemptStatus.PENDING,
    "TRADE_SUCCESS": AttemptStatus.SUCCEEDED,
    "TRADE_FINISHED": AttemptStatus.SUCCEEDED,
    # Unpaid and expired, or fully refunded after success. The state machine never
    # lets a succeeded attempt regress, so the second meaning cannot undo a payment.
    "TRADE_CLOSED": AttemptStatus.CLOSED,
}

HUABEI_FUND_CHANNEL = "PCREDIT"
SETTLEMENT_MALFORMED = "settlement_file_malformed"
# A daily bill for one merchant is far smaller; anything bigger is not a bill.
MAX_BILL_BYTES = 64 * 1024 * 1024
_BILL_COLUMNS = {
    "channel_trade_no": "支付宝交易号",
    "out_trade_no": "商户订单号",
    "business_type": "业务类型",
    "amount": "订单金额(元)",
    "finished_at": "完成时间",
}
_FULL_WIDTH_PARENTHESES = str.maketrans({"\uff08": "(", "\uff09": ")"})
_BILL_KINDS = {"交易": "payment", "退款": "refund"}
_JSON_WHITESPACE = " \t\r\n"


def sign_content(params: Mapping[str, str], *, include_sign_type: bool = False) -> str:
    """The canonical string Alipay signs: ``k=v`` pairs sorted by key, joined by ``&``.

    ``sign`` and empty values are always left out. ``sign_type`` is left out by
    default, which is the rule for async notifications; requests sent *to* the
    gateway sign it too (``include_sign_type=True``), as Alipay's own SDKs do.
    """
    excluded = {"sign"} if include_sign_type else {"sign", "sign_type"}
    return "&".join(
        f"{key}={params[key]}" for key in sorted(params) if key not in excluded and params[key]
    )


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
            biz["time_expire"] = _alipay_time(request.expires_at)
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
            raise ChannelUnavailable(sub_code or CODE_BUSINESS_FAILED, _describe(answer))
        try:
            result = _parse_trade(answer, paid_at_key="send_pay_date")
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
            raise ChannelDeclined("already_paid", _describe(answer))
        raise ChannelUnavailable(sub_code or CODE_BUSINESS_FAILED, _describe(answer))

    def refund(
        self, *, out_trade_no: str, refund_no: str, amount: Decimal, reason: str
    ) -> RefundResult:
        """``alipay.trade.refund``, idempotent on ``out_request_no`` = ``refund_no``."""
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
            raise ChannelOutcomeUnknown(sub_code, _describe(answer))
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
            raise ChannelUnavailable(code, _describe(answer))
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
        params = _form_params(callback.body)
        self._verify_notify(params)
        try:
            return _parse_trade(params, paid_at_key="gmt_payment")
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
            "timestamp": _alipay_time(self._clock()),
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
        _check_gateway_code(answer, lost)
        return answer

    def _verified_answer(
        self, method: str, content: bytes, lost: type[ChannelError]
    ) -> dict[str, Any]:
        """The ``*_response`` object, after checking Alipay's signature on its raw text."""
        try:
            spans = _top_level_spans(content.decode("utf-8"))
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


# --- helpers ------------------------------------------------------------------


def _check_gateway_code(answer: Mapping[str, Any], lost: type[ChannelError]) -> None:
    """Raise for gateway-level failures; 10000 and 40004 are left to the caller."""
    code = str(answer.get("code", ""))
    if code in (CODE_SUCCESS, CODE_BUSINESS_FAILED):
        return
    if code == CODE_SERVICE_UNAVAILABLE:
        raise lost(code, _describe(answer))
    # 20001 (authorisation), 40001/40002 (missing/invalid parameter), 40006
    # (permission): refused before any processing.
    raise ChannelUnavailable(code or "no_code", _describe(answer))


def _describe(answer: Mapping[str, Any]) -> str:
    parts = (answer.get(key) for key in ("code", "msg", "sub_code", "sub_msg"))
    return " ".join(str(part) for part in parts if part)


def _top_level_spans(text: str) -> dict[str, str]:
    """Map each top-level key of a JSON object to the exact source text of its value.

    The response signature covers the bytes Alipay sent, and re-serialising would
    change spacing, key order or escapes, so values are cut out, not re-dumped.

    :raises ValueError: not a single JSON object, or a key appears twice.
    """
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if text[pos : pos + 1] != "{":
        raise ValueError("answer is not a JSON object")
    pos = _skip_space(text, pos + 1)
    spans: dict[str, str] = {}
    closing = text[pos : pos + 1] == "}"
    while not closing:
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        if not isinstance(key, str) or key in spans or text[pos : pos + 1] != ":":
            raise ValueError(f"bad or repeated key near offset {pos}")
        start = _skip_space(text, pos + 1)
        _, end = decoder.raw_decode(text, start)
        spans[key] = text[start:end]
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator not in (",", "}"):
            raise ValueError(f"expected ',' or '}}' at offset {pos}")
        closing = separator == "}"
        pos = _skip_space(text, pos + 1)
    if pos != len(text):
        raise ValueError("trailing data after the JSON object")
    return spans


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _JSON_WHITESPACE:
        pos += 1
    return pos


def _form_params(body: bytes) -> dict[str, str]:
    """Decode a UTF-8 form body, refusing anything that could be read two ways."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            encoding="utf-8",
            errors="strict",
            max_num_fields=200,
        )
    except ValueError as exc:  # includes UnicodeDecodeError
        raise CallbackRejected(f"body is not a UTF-8 form: {exc}") from exc
    params = dict(pairs)
    if len(params) != len(pairs):
        # A repeated field could be read as either value by different code paths.
        raise CallbackRejected("a parameter is repeated")
    return params


def _parse_trade(fields: Mapping[str, Any], *, paid_at_key: str) -> TradeResult:
    """Read the trade fields a query answer and a notification share.

    :raises ValueError: a required field is missing, or a value is not understood.
    """
    out_trade_no = _required(fields, "out_trade_no")
    trade_status = _required(fields, "trade_status")
    status = TRADE_STATUSES.get(trade_status)
    if status is None:
        raise ValueError(f"unknown trade_status {trade_status!r}")
    try:
        amount = parse_amount(_required(fields, "total_amount"))
    except InvalidAmount as exc:
        raise ValueError(f"total_amount: {exc.message}") from exc
    return TradeResult(
        out_trade_no=out_trade_no,
        status=status,
        channel_trade_no=str(fields.get("trade_no", "")),
        amount=amount,
        accepted_at=_parse_alipay_time(fields.get(paid_at_key)),
        funding=_funding(fields.get("fund_bill_list")),
        raw=dict(fields),
    )


def _required(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"required field {key!r} is missing")
    return value


def _parse_alipay_time(value: object) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time, as an aware datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not text")
    return datetime.strptime(value, ALIPAY_TIME_FORMAT).replace(tzinfo=SHANGHAI)


def _alipay_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("Alipay times are built from aware datetimes only")
    return moment.astimezone(SHANGHAI).strftime(ALIPAY_TIME_FORMAT)


def _funding(value: object) -> str:
    """``PCREDIT`` when Huabei paid any part, from ``fund_bill_list``.

    Notifications carry it as a JSON string with ``fundChannel``; query answers
    as a real list with ``fund_channel``. Both are accepted. Some notifications
    are reported to arrive HTML-escaped (``&quot;``), so that is undone first
    (only here: the signature covers the value exactly as received).
    """
    if value is None or value == "":
        return ""
    bills = json.loads(html.unescape(value)) if isinstance(value, str) else value
    if not isinstance(bills, list) or not all(isinstance(bill, dict) for bill in bills):
        raise ValueError("fund_bill_list is not a list of objects")
    channels = {bill.get("fundChannel") or bill.get("fund_channel") for bill in bills}
    return HUABEI_FUND_CHANNEL if HUABEI_FUND_CHANNEL in channels else ""


# --- settlement files ---------------------------------------------------------


def parse_settlement_file(content: bytes) -> list[SettlementRecord]:
    """Parse a trade bill: Alipay's GBK ``csv.zip``, or a plain CSV (UTF-8 or GBK).

    :raises ChannelError: ``settlement_file_malformed``, naming the line at fault.
    """
    if content[:2] == b"PK":
        return parse_settlement_csv(_detail_csv_from_zip(content))
    for encoding in ("utf-8-sig", "gbk"):
        try:
            return parse_settlement_csv(content.decode(encoding))
        except UnicodeDecodeError:
            continue
    raise ChannelError(SETTLEMENT_MALFORMED, "file is neither UTF-8 nor GBK text")


def _detail_csv_from_zip(content: bytes) -> str:
    """The detail CSV inside Alipay's bill zip (the other member is a summary)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for member in archive.infolist():
                # Member names are GBK without the UTF-8 flag, so they are not
                # reliable; the detail file is recognised by its header instead.
                if member.file_size > MAX_BILL_BYTES or not member.filename.endswith(".csv"):
                    continue
                text = archive.read(member).decode("gbk")
                if _BILL_COLUMNS["channel_trade_no"] in text:
                    return text
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ChannelError(SETTLEMENT_MALFORMED, f"bad bill archive: {exc}") from exc
    raise ChannelError(SETTLEMENT_MALFORMED, "no detail CSV in the bill archive")


def parse_settlement_csv(text: str) -> list[SettlementRecord]:
    """Rows of a trade-bill CSV; ``#`` lines (Alipay's title and totals) are skipped.

    :raises ChannelError: ``settlement_file_malformed``, naming the line at fault.
    """
    records: list[SettlementRecord] = []
    columns: dict[str, int] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # Alipay pads cells with tabs so spreadsheets keep long numbers as text.
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if columns is None:
            columns = _bill_columns(cells, number)
        else:
            records.append(_bill_record(cells, columns, number))
    if columns is None:
        raise ChannelError(SETTLEMENT_MALFORMED, "no header row")
    return records


def _bill_columns(header: list[str], number: int) -> dict[str, int]:
    # The real file writes the amount title with full-width parentheses.
    names = [cell.translate(_FULL_WIDTH_PARENTHESES) for cell in header]
    missing = [title for title in _BILL_COLUMNS.values() if title not in names]
    if missing:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: header lacks {missing}")
    return {field: names.index(title) for field, title in _BILL_COLUMNS.items()}


def _bill_record(cells: list[str], columns: Mapping[str, int], number: int) -> SettlementRecord:
    if len(cells) <= max(columns.values()):
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: too few columns")
    business_type = cells[columns["business_type"]]
    kind = _BILL_KINDS.get(business_type)
    if kind is None:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: business type {business_type!r}")
    amount_text = cells[columns["amount"]]
    if kind == "refund":
        # Refund rows may show the amount as negative; the kind carries the sign.
        amount_text = amount_text.removeprefix("-")
    try:
        amount = parse_amount(amount_text)
        # fromisoformat reads "YYYY-MM-DD HH:MM:SS" several times faster than strptime,
        # which dominates parsing a million-line bill.
        finished = datetime.fromisoformat(cells[columns["finished_at"]])
    except (InvalidAmount, ValueError) as exc:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: {exc}") from exc
    out_trade_no = cells[columns["out_trade_no"]]
    channel_trade_no = cells[columns["channel_trade_no"]]
    if not out_trade_no or not channel_trade_no:
        raise ChannelError(SETTLEMENT_MALFORMED, f"line {number}: missing trade number")
    return SettlementRecord(
        out_trade_no=out_trade_no,
        channel_trade_no=channel_trade_no,
        amount=amount,
        kind=kind,
        settled_on=finished.date(),
    )
