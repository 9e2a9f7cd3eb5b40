"""The Alipay open-platform wire format: signing content, gateway answers, notify
forms, trade fields and times."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from repayments.channels.base import (
    CallbackRejected,
    ChannelError,
    ChannelUnavailable,
    TradeResult,
)
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


def check_gateway_code(answer: Mapping[str, Any], lost: type[ChannelError]) -> None:
    """Raise for gateway-level failures; 10000 and 40004 are left to the caller."""
    code = str(answer.get("code", ""))
    if code in (CODE_SUCCESS, CODE_BUSINESS_FAILED):
        return
    if code == CODE_SERVICE_UNAVAILABLE:
        raise lost(code, describe_answer(answer))
    # 20001 (authorisation), 40001/40002 (missing/invalid parameter), 40006
    # (permission): refused before any processing.
    raise ChannelUnavailable(code or "no_code", describe_answer(answer))


def describe_answer(answer: Mapping[str, Any]) -> str:
    parts = (answer.get(key) for key in ("code", "msg", "sub_code", "sub_msg"))
    return " ".join(str(part) for part in parts if part)


def top_level_spans(text: str) -> dict[str, str]:
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


def form_params(body: bytes) -> dict[str, str]:
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


def parse_trade(fields: Mapping[str, Any], *, paid_at_key: str) -> TradeResult:
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
        accepted_at=parse_alipay_time(fields.get(paid_at_key)),
        funding=_funding(fields.get("fund_bill_list")),
        raw=dict(fields),
    )


def _required(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"required field {key!r} is missing")
    return value


def parse_alipay_time(value: object) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` in Beijing time, as an aware datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not text")
    return datetime.strptime(value, ALIPAY_TIME_FORMAT).replace(tzinfo=SHANGHAI)


def alipay_time(moment: datetime) -> str:
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
