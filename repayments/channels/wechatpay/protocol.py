"""The WeChat Pay API v3 wire format: the messages both sides sign, amounts in fen,
answers, notification resources and times."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from repayments.channels import crypto
from repayments.channels.base import (
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelUnavailable,
    TradeResult,
)
from repayments.channels.transport import request_never_sent
from repayments.domain.money import FEN
from repayments.domain.states import AttemptStatus

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# WeChat Pay re-signs every retry of a notification, so an old timestamp is a replay.
REPLAY_WINDOW_SECONDS = 300
CURRENCY = "CNY"
NOTIFY_HEADERS = (
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
    "wechatpay-serial",
)
SETTLEMENT_MALFORMED = "settlement_file_malformed"

TRADE_STATES: dict[str, AttemptStatus] = {
    "SUCCESS": AttemptStatus.SUCCEEDED,
    # REFUND: the borrower did pay and a refund followed. The payment stays succeeded
    # (confirmed state never regresses); the refund belongs to the refund flow, and
    # ``raw["trade_state"]`` still says REFUND for anyone who needs to know.
    "REFUND": AttemptStatus.SUCCEEDED,
    "NOTPAY": AttemptStatus.PENDING,
    "USERPAYING": AttemptStatus.PENDING,
    "ACCEPT": AttemptStatus.PENDING,  # accepted, debit not done yet (some products)
    "CLOSED": AttemptStatus.CLOSED,
    "REVOKED": AttemptStatus.CLOSED,
    "PAYERROR": AttemptStatus.FAILED,
}


def request_message(
    method: str, path_with_query: str, timestamp: str | int, nonce: str, body: bytes | str
) -> bytes:
    """The bytes a merchant signs: ``METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n``.

    ``path_with_query`` is the request's absolute path and query exactly as sent,
    without scheme or host; ``body`` is the exact bytes sent (empty for GET).
    """
    head = f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n".encode()
    return head + as_bytes(body) + b"\n"


def response_message(timestamp: str | int, nonce: str, body: bytes | str) -> bytes:
    """The bytes WeChat Pay signs on answers and notifications: ``timestamp\\nnonce\\nbody\\n``."""
    return f"{timestamp}\n{nonce}\n".encode() + as_bytes(body) + b"\n"


def authorization_header(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    path_with_query: str,
    body: bytes | str,
    timestamp: str | int | None = None,
    nonce: str | None = None,
) -> str:
    """Build the ``Authorization`` value for one request (fresh timestamp and nonce by default)."""
    timestamp = str(int(time.time())) if timestamp is None else str(timestamp)
    nonce = nonce or secrets.token_hex(16)
    message = request_message(method, path_with_query, timestamp, nonce, body)
    signature = crypto.rsa2_sign(private_key, message)
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization_header(value: str) -> dict[str, str]:
    """Split an ``Authorization`` value into its fields; ``{}`` if it is not ours."""
    schema, _, params = value.partition(" ")
    if schema != SCHEMA:
        return {}
    fields: dict[str, str] = {}
    for part in params.split(","):
        key, sep, quoted = part.strip().partition("=")
        if not sep or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            return {}
        fields[key] = quoted[1:-1]
    return fields


def yuan_to_fen(amount: Decimal) -> int:
    """Convert yuan to integer fen, refusing anything that is not a whole number of fen."""
    fen = amount * 100
    if not fen.is_finite() or fen != fen.to_integral_value() or fen < 0:
        raise ValueError(f"{amount} is not a whole number of fen")
    return int(fen)


def fen_to_yuan(fen: object) -> Decimal:
    """Convert a JSON integer of fen to a two-place yuan Decimal (no floats accepted)."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError(f"{fen!r} is not a non-negative integer of fen")
    return (Decimal(fen) / 100).quantize(FEN)


class Malformed(ValueError):
    """A signed document lacks a field we need or carries a value we do not know."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body) if self.body else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def code(self) -> str:
        return str(self.json().get("code") or "")

    def error(
        self,
        *,
        server_error: type[ChannelError],
        client_error: type[ChannelError] = ChannelDeclined,
    ) -> ChannelError:
        """Classify an error answer; the caller says what a server error means for it."""
        code = self.code or f"HTTP_{self.status}"
        message = str(self.json().get("message") or "")
        if self.status == 429 or code == "FREQUENCY_LIMITED":
            return ChannelUnavailable(code, message)  # throttled before doing anything
        if 400 <= self.status < 500 and code != "SYSTEM_ERROR":
            return client_error(code, message)
        return server_error(code, message)  # 5xx, SYSTEM_ERROR, or a stray 3xx


def transport_error(exc: requests.RequestException, uncertain: type[ChannelError]) -> ChannelError:
    """Classify a failed exchange by whether WeChat Pay may have received the request."""
    if request_never_sent(exc):
        return ChannelUnavailable("unreachable", str(exc))
    # A read time-out or a reset after the request went out: WeChat Pay may have
    # acted on it, and only a later query can tell.
    return uncertain("no_answer", str(exc))


def trade_result(
    data: Mapping[str, Any], *, amount_required: bool, event_type: str = ""
) -> TradeResult:
    """Map a transaction object (query answer or decrypted notify resource)."""
    out_trade_no = _required_str(data, "out_trade_no")
    state = _required_str(data, "trade_state")
    status = TRADE_STATES.get(state)
    if status is None:
        raise Malformed(f"unknown trade_state {state!r}")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if total is None and (amount_required or status is AttemptStatus.SUCCEEDED):
        raise Malformed("amount.total is missing")
    failed = status is AttemptStatus.FAILED
    raw = {**data, "event_type": event_type} if event_type else dict(data)
    return TradeResult(
        out_trade_no=out_trade_no,
        status=status,
        channel_trade_no=str(data.get("transaction_id") or ""),
        amount=None if total is None else _yuan(total, "amount.total"),
        accepted_at=_optional_time(data.get("success_time"), "success_time"),
        funding=str(data.get("bank_type") or ""),  # e.g. "ICBC_CREDIT" for a credit card
        failure_code=state if failed else "",
        failure_message=str(data.get("trade_state_desc") or "") if failed else "",
        raw=raw,
    )


def refund_notice_result(data: Mapping[str, Any], event_type: str) -> TradeResult:
    """A refund notice still proves the order was paid: report it as succeeded.

    ``accepted_at`` stays empty: the notice's success_time is the refund's, not the
    payment's. The refund's own fields stay in ``raw`` for the refund flow.
    """
    out_trade_no = _required_str(data, "out_trade_no")
    _required_str(data, "refund_status")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if total is None:
        raise Malformed("amount.total is missing")
    return TradeResult(
        out_trade_no=out_trade_no,
        status=AttemptStatus.SUCCEEDED,
        channel_trade_no=str(data.get("transaction_id") or ""),
        amount=_yuan(total, "amount.total"),
        raw={**data, "event_type": event_type},
    )


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise Malformed(f"{key} is missing")
    return value


def _yuan(fen: object, key: str) -> Decimal:
    try:
        return fen_to_yuan(fen)
    except ValueError as exc:
        raise Malformed(f"{key}: {exc}") from exc


def _optional_time(value: object, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise Malformed(f"{key} {value!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise Malformed(f"{key} {value!r} has no UTC offset")
    return moment


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CallbackUnparseable(f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise CallbackUnparseable(f"{what} is not a JSON object")
    return data


def rfc3339(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError("expires_at must be an aware datetime")
    return moment.replace(microsecond=0).isoformat()


def as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body
