"""WeChat Pay API v3 adapter: Native (QR code) orders, query, close, refund, notify, bills.

The protocol, as this module speaks it:

- Every request is signed with the merchant private key (SHA256withRSA) over
  ``METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`` and sent as an ``Authorization:
  WECHATPAY2-SHA256-RSA2048 ...`` header naming our certificate serial.
- Every answer and notification is signed by WeChat Pay's platform key over
  ``timestamp\\nnonce\\nbody\\n`` in the ``Wechatpay-*`` headers. The body is the RAW
  bytes received; re-serialised JSON would not verify.
- A notification's ``resource`` is AES-256-GCM encrypted with the APIv3 key.
- Amounts are integer fen (``amount.total``); they convert exactly to yuan Decimals.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from repayments.channels import crypto
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
from repayments.channels.transport import request_never_sent
from repayments.domain.money import FEN, InvalidAmount, parse_amount
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


@dataclass(frozen=True)
class WechatPayConfig:
    mchid: str
    appid: str
    api_url: str
    merchant_private_key_path: str
    cert_serial: str  # serial of OUR merchant API certificate, sent in Authorization
    platform_public_key_path: str
    apiv3_key: str  # 32 ASCII characters
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    # Wechatpay-Serial WeChat Pay signs with (certificate serial or PUB_KEY_ID_...);
    # "" accepts any serial, since the key itself is what we verify with.
    platform_serial: str = ""

    @classmethod
    def from_settings(cls) -> WechatPayConfig:
        return cls(
            mchid=settings.WECHATPAY_MCHID,
            appid=settings.WECHATPAY_APPID,
            api_url=settings.WECHATPAY_API_URL,
            merchant_private_key_path=str(settings.WECHATPAY_PRIVATE_KEY_PATH),
            cert_serial=settings.WECHATPAY_CERT_SERIAL,
            platform_public_key_path=str(settings.WECHATPAY_PLATFORM_PUBLIC_KEY_PATH),
            apiv3_key=settings.WECHATPAY_APIV3_KEY,
            timeout=float(settings.CHANNEL_TIMEOUT_SECONDS),
            # Optional: not every deployment pins the platform serial.
            platform_serial=getattr(settings, "WECHATPAY_PLATFORM_SERIAL", ""),
        )


# --- Messages both sides sign (the sandbox reuses these) ---------------------------


def request_message(
    method: str, path_with_query: str, timestamp: str | int, nonce: str, body: bytes | str
) -> bytes:
    """The bytes a merchant signs: ``METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n``.

    ``path_with_query`` is the request's absolute path and query exactly as sent,
    without scheme or host; ``body`` is the exact bytes sent (empty for GET).
    """
    head = f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n".encode()
    return head + _as_bytes(body) + b"\n"


def response_message(timestamp: str | int, nonce: str, body: bytes | str) -> bytes:
    """The bytes WeChat Pay signs on answers and notifications: ``timestamp\\nnonce\\nbody\\n``."""
    return f"{timestamp}\n{nonce}\n".encode() + _as_bytes(body) + b"\n"


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


# --- The adapter --------------------------------------------------------------------


class WechatPayChannel:
    """WeChat Pay API v3 behind :class:`~repayments.channels.base.PaymentChannel`."""

    name = "wechatpay"

    def __init__(self, config: WechatPayConfig) -> None:
        self.config = config

    # Keys load on first use, so building the router never needs key files.
    @cached_property
    def _merchant_key(self) -> rsa.RSAPrivateKey:
        return crypto.load_private_key(self.config.merchant_private_key_path)

    @cached_property
    def _platform_key(self) -> rsa.RSAPublicKey:
        return crypto.load_public_key(self.config.platform_public_key_path)

    @cached_property
    def _apiv3_key(self) -> bytes:
        key = self.config.apiv3_key.encode()
        if len(key) != 32:  # a shorter key would silently select AES-128/192
            raise ValueError("the WeChat Pay APIv3 key must be 32 bytes")
        return key

    def create_order(self, request: OrderRequest) -> OrderCreated:
        """Open a Native order and return its QR code (H5 borrowers scan it too).

        :raises ChannelDeclined: WeChat Pay refused the order (4xx such as PARAM_ERROR).
        :raises ChannelUnavailable: not reached, throttled, or a server error.
        :raises ChannelOutcomeUnknown: sent but no trustworthy answer; query it.
        """
        payload: dict[str, Any] = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": request.subject,
            "out_trade_no": request.out_trade_no,
            "notify_url": request.notify_url,
            "amount": {"total": yuan_to_fen(request.amount), "currency": CURRENCY},
        }
        if request.expires_at is not None:
            payload["time_expire"] = _rfc3339(request.expires_at)
        # A time-out after sending: WeChat Pay may now hold an order under this
        # out_trade_no, and creating it again with other parameters would collide, so
        # the caller must query before it moves on (ChannelOutcomeUnknown).
        answer = self._send(
            "POST", "/v3/pay/transactions/native", payload, uncertain=ChannelOutcomeUnknown
        )
        if not answer.ok:
            # A server error is "unavailable": no code_url left WeChat Pay, so nobody
            # can pay an order it may have half-created.
            raise answer.error(server_error=ChannelUnavailable)
        data = answer.json()
        code_url = data.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise ChannelOutcomeUnknown("malformed_response", "order answer has no code_url")
        result = TradeResult(
            out_trade_no=request.out_trade_no,
            status=AttemptStatus.PENDING,
            amount=request.amount,
            raw=data,
        )
        return OrderCreated(result=result, next_action=NextAction("qr_code", code_url))

    def query(self, out_trade_no: str, *, placed_at: datetime | None = None) -> TradeResult:
        """Ask WeChat Pay for the order's state.

        A read moves no money, so every failure to get a usable, signed answer is
        :class:`ChannelUnavailable`: try again later.
        """
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self.config.mchid, safe='')}"
        )
        answer = self._send("GET", path, uncertain=ChannelUnavailable)
        if answer.status == 404 and answer.code == "ORDER_NOT_EXIST":
            # Nothing paid yet: the borrower never scanned the code (or our create never
            # arrived). The attempt stays pending until it expires and is closed.
            return TradeResult(
                out_trade_no=out_trade_no,
                status=AttemptStatus.PENDING,
                failure_code="ORDER_NOT_EXIST",
                raw=answer.json(),
            )
        if not answer.ok:
            raise answer.error(server_error=ChannelUnavailable, client_error=ChannelUnavailable)
        try:
            result = _trade_result(answer.json(), amount_required=False)
        except _Malformed as exc:
            raise ChannelUnavailable("malformed_response", str(exc)) from exc
        if result.out_trade_no != out_trade_no:
            raise ChannelUnavailable("malformed_response", "answer is about another order")
        return result

    def close(self, out_trade_no: str, *, placed_at: datetime | None = None) -> None:
        """Close an unpaid order so it can no longer be paid.

        :raises ChannelDeclined: ``already_paid`` when the borrower paid first (query
            it to record the payment), or another 4xx refusal.
        :raises ChannelUnavailable: not reached, throttled, or a server error.
        :raises ChannelOutcomeUnknown: sent but no trustworthy answer; query it.
        """
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        answer = self._send(
            "POST", path, {"mchid": self.config.mchid}, uncertain=ChannelOutcomeUnknown
        )
        if answer.ok or answer.code == "ORDER_CLOSED":  # closing twice is not an error
            return
        if answer.code == "ORDER_PAID":
            raise ChannelDeclined("already_paid", f"{out_trade_no} was paid before the close")
        raise answer.error(server_error=ChannelUnavailable)

    def refund(
        self, *, out_trade_no: str, refund_no: str, amount: Decimal, reason: str
    ) -> RefundResult:
        """Refund an order in full: ``amount`` is sent as both the refund and the order total.

        WeChat Pay needs the order total; the interface only carries one amount, and
        the one refund we issue (a duplicate payment) returns the whole order.
        PROCESSING counts as succeeded: WeChat Pay accepted it and finishes it itself.

        :raises ChannelDeclined: refused (4xx such as NOT_ENOUGH or INVALID_REQUEST).
        :raises ChannelUnavailable: not reached or throttled.
        :raises ChannelOutcomeUnknown: no trustworthy answer or a server error: retry
            with the same ``refund_no`` (WeChat Pay deduplicates on it).
        """
        fen = yuan_to_fen(amount)
        payload: dict[str, Any] = {
            "out_trade_no": out_trade_no,
            "out_refund_no": refund_no,
            "amount": {"refund": fen, "total": fen, "currency": CURRENCY},
        }
        if reason:
            payload["reason"] = reason
        answer = self._send(
            "POST", "/v3/refund/domestic/refunds", payload, uncertain=ChannelOutcomeUnknown
        )
        if not answer.ok:
            # SYSTEM_ERROR on a refund may still have been accepted.
            raise answer.error(server_error=ChannelOutcomeUnknown)
        data = answer.json()
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise ChannelOutcomeUnknown("malformed_response", "refund answer has no status")
        accepted = status in ("SUCCESS", "PROCESSING")
        return RefundResult(
            refund_no=refund_no,
            succeeded=accepted,
            channel_refund_no=str(data.get("refund_id") or ""),
            failure_code="" if accepted else status,
        )

    def parse_callback(self, callback: InboundCallback, *, now: datetime) -> TradeResult:
        """Verify a notification and return what it says about the order.

        :raises CallbackRejected: missing header, foreign serial, stale or future
            timestamp, bad signature, resource that fails AES-GCM, foreign mchid/appid.
        :raises CallbackUnparseable: verified, but a field is missing, renamed or unknown.
        """
        self._verify_notification(callback, now)
        envelope = _json_object(callback.body, "notification body")
        resource = self._decrypt_resource(envelope)
        event_type = str(envelope.get("event_type") or "")
        # Refund notices carry a refund object: it has mchid but no appid.
        is_refund = event_type.startswith("REFUND.")
        if resource.get("mchid") != self.config.mchid:
            raise CallbackRejected(f"mchid {resource.get('mchid')!r} is not ours")
        if not is_refund and resource.get("appid") != self.config.appid:
            raise CallbackRejected(f"appid {resource.get('appid')!r} is not ours")
        try:
            if is_refund:
                return _refund_notice_result(resource, event_type)
            return _trade_result(resource, amount_required=True, event_type=event_type)
        except _Malformed as exc:
            raise CallbackUnparseable(str(exc)) from exc

    def callback_ack(self) -> CallbackAck:
        """API v3 stops resending on any 200/204; an empty 204 is the plainest yes."""
        return CallbackAck(status=204, body=b"", content_type="application/json")

    def fetch_settlement_file(self, day: date) -> list[SettlementRecord]:
        """Download and parse the day's trade bill (``bill_type=ALL``, plain CSV).

        :raises ChannelUnavailable: no bill yet (NO_STATEMENT_EXIST), not reached, or
            the file does not match the hash in the signed answer.
        :raises ChannelError: ``settlement_file_malformed``, naming the line.
        """
        path = f"/v3/bill/tradebill?bill_date={day.isoformat()}"
        answer = self._send("GET", path, uncertain=ChannelUnavailable)
        if not answer.ok:
            raise answer.error(server_error=ChannelUnavailable, client_error=ChannelUnavailable)
        data = answer.json()
        url = data.get("download_url")
        if not isinstance(url, str) or not self._same_origin(url):
            raise ChannelUnavailable("malformed_response", f"unusable download_url {url!r}")
        # The file itself is not signed; the signed answer vouches for it by its hash.
        file = self._send("GET", url, uncertain=ChannelUnavailable, signed_answer=False)
        if not file.ok:
            raise file.error(server_error=ChannelUnavailable, client_error=ChannelUnavailable)
        _check_bill_hash(file.body, data)
        try:
            text = file.body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ChannelError(SETTLEMENT_MALFORMED, "the bill is not UTF-8") from exc
        return parse_trade_bill(text, day)

    # --- HTTP ------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        target: str,
        payload: Mapping[str, Any] | None = None,
        *,
        uncertain: type[ChannelError],
        signed_answer: bool = True,
    ) -> _Answer:
        """Send one signed request and return the answer once its signature is checked.

        ``uncertain`` is raised when the request may have been acted on but no
        trustworthy answer came back: OutcomeUnknown for writes, Unavailable for reads.
        """
        prepared = self._prepare(method, target, payload)
        try:
            with requests.Session() as session:
                # Honour HTTPS_PROXY/NO_PROXY like requests.request() would.
                env = session.merge_environment_settings(prepared.url, {}, None, None, None)
                response = session.send(
                    prepared, timeout=self.config.timeout, allow_redirects=False, **env
                )
        except requests.RequestException as exc:
            raise _transport_error(exc, uncertain) from exc
        answer = _Answer(response.status_code, response.content)
        if signed_answer and not self._answer_trusted(response.headers, answer):
            raise uncertain("bad_signature", f"answer to {method} {prepared.path_url}")
        return answer

    def _prepare(
        self, method: str, target: str, payload: Mapping[str, Any] | None
    ) -> requests.PreparedRequest:
        body = b""
        headers = {"Accept": "application/json", "User-Agent": "anxin-repay-wechatpay/1"}
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        url = target if "://" in target else self.config.api_url.rstrip("/") + target
        prepared = requests.Request(method, url, data=body or None, headers=headers).prepare()
        # Sign the path exactly as it goes on the wire (any gateway prefix included).
        prepared.headers["Authorization"] = authorization_header(
            mchid=self.config.mchid,
            serial_no=self.config.cert_serial,
            private_key=self._merchant_key,
            method=method,
            path_with_query=prepared.path_url,
            body=body,
        )
        return prepared

    def _answer_trusted(self, headers: Mapping[str, str], answer: _Answer) -> bool:
        """2xx answers must carry a valid platform signature; errors are checked if signed.

        Gateways in front of WeChat Pay answer some errors unsigned (the official SDKs
        only verify 2xx), and an error only ever leads to a retry or a query.
        """
        lowered = {key.lower(): value for key, value in headers.items()}
        if not answer.ok and "wechatpay-signature" not in lowered:
            return True
        timestamp, nonce, signature, serial = (lowered.get(h, "") for h in NOTIFY_HEADERS)
        if not (timestamp and nonce and signature and serial):
            return False
        if self.config.platform_serial and serial != self.config.platform_serial:
            return False
        message = response_message(timestamp, nonce, answer.body)
        return crypto.rsa2_verify(self._platform_key, message, signature)

    def _same_origin(self, url: str) -> bool:
        """Only send our signed request to WeChat Pay's own host."""
        ours, theirs = urlsplit(self.config.api_url), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    # --- Notifications -----------------------------------------------------------------

    def _verify_notification(self, callback: InboundCallback, now: datetime) -> None:
        headers = {key.lower(): value for key, value in callback.headers.items()}
        missing = [name for name in NOTIFY_HEADERS if not headers.get(name)]
        if missing:
            raise CallbackRejected(f"missing header(s): {', '.join(missing)}")
        timestamp, nonce, signature, serial = (headers[name] for name in NOTIFY_HEADERS)
        signature_type = headers.get("wechatpay-signature-type", SCHEMA)
        if signature_type != SCHEMA:
            raise CallbackRejected(f"unsupported signature type {signature_type!r}")
        if self.config.platform_serial and serial != self.config.platform_serial:
            raise CallbackRejected(f"unknown platform serial {serial!r}")
        # Both directions: a timestamp from the future is as suspect as a stale one.
        if not (timestamp.isascii() and timestamp.isdigit()) or (
            abs(now.timestamp() - int(timestamp)) > REPLAY_WINDOW_SECONDS
        ):
            raise CallbackRejected(f"timestamp {timestamp!r} is outside the replay window")
        message = response_message(timestamp, nonce, callback.body)
        if not crypto.rsa2_verify(self._platform_key, message, signature):
            raise CallbackRejected("signature does not verify with the platform key")

    def _decrypt_resource(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        resource = envelope.get("resource")
        if not isinstance(resource, dict):
            raise CallbackUnparseable("notification has no resource object")
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise CallbackUnparseable(f"unsupported algorithm {resource.get('algorithm')!r}")
        ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
        associated_data = resource.get("associated_data") or ""  # may be empty or absent
        if not all(isinstance(v, str) and v for v in (ciphertext, nonce)) or not isinstance(
            associated_data, str
        ):
            raise CallbackUnparseable("resource lacks ciphertext, nonce or associated_data")
        try:
            plaintext = crypto.aes_gcm_decrypt(
                self._apiv3_key, str(nonce), str(ciphertext), associated_data
            )
        except ValueError as exc:
            # The tag covers ciphertext and associated data: failing it means tampering
            # or a key that is not ours, never a format change.
            raise CallbackRejected("resource fails AES-GCM authentication") from exc
        return _json_object(plaintext, "decrypted resource")


# --- Answers and parsing ---------------------------------------------------------------


class _Malformed(ValueError):
    """A signed document lacks a field we need or carries a value we do not know."""


@dataclass(frozen=True)
class _Answer:
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


def _transport_error(exc: requests.RequestException, uncertain: type[ChannelError]) -> ChannelError:
    """Classify a failed exchange by whether WeChat Pay may have received the request."""
    if request_never_sent(exc):
        return ChannelUnavailable("unreachable", str(exc))
    # A read time-out or a reset after the request went out: WeChat Pay may have
    # acted on it, and only a later query can tell.
    return uncertain("no_answer", str(exc))


def _trade_result(
    data: Mapping[str, Any], *, amount_required: bool, event_type: str = ""
) -> TradeResult:
    """Map a transaction object (query answer or decrypted notify resource)."""
    out_trade_no = _required_str(data, "out_trade_no")
    state = _required_str(data, "trade_state")
    status = TRADE_STATES.get(state)
    if status is None:
        raise _Malformed(f"unknown trade_state {state!r}")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if total is None and (amount_required or status is AttemptStatus.SUCCEEDED):
        raise _Malformed("amount.total is missing")
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


def _refund_notice_result(data: Mapping[str, Any], event_type: str) -> TradeResult:
    """A refund notice still proves the order was paid: report it as succeeded.

    ``accepted_at`` stays empty: the notice's success_time is the refund's, not the
    payment's. The refund's own fields stay in ``raw`` for the refund flow.
    """
    out_trade_no = _required_str(data, "out_trade_no")
    _required_str(data, "refund_status")
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if total is None:
        raise _Malformed("amount.total is missing")
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
        raise _Malformed(f"{key} is missing")
    return value


def _yuan(fen: object, key: str) -> Decimal:
    try:
        return fen_to_yuan(fen)
    except ValueError as exc:
        raise _Malformed(f"{key}: {exc}") from exc


def _optional_time(value: object, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _Malformed(f"{key} {value!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise _Malformed(f"{key} {value!r} has no UTC offset")
    return moment


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CallbackUnparseable(f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise CallbackUnparseable(f"{what} is not a JSON object")
    return data


def _rfc3339(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError("expires_at must be an aware datetime")
    return moment.replace(microsecond=0).isoformat()


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


# --- Trade bill ----------------------------------------------------------------------

BILL_COLUMNS = {
    "channel_trade_no": "微信订单号",
    "out_trade_no": "商户订单号",
    "state": "交易状态",
    "paid": "应结订单金额",
    "refunded": "退款金额",
}
BILL_KINDS = {"SUCCESS": ("payment", "paid"), "REFUND": ("refund", "refunded")}
BILL_SUMMARY_MARK = "总交易单数"  # the summary block after the rows starts here


def _check_bill_hash(body: bytes, answer: Mapping[str, Any]) -> None:
    expected = str(answer.get("hash_value") or "")
    if not expected:
        return
    if str(answer.get("hash_type") or "SHA1").upper() != "SHA1":
        raise ChannelUnavailable("malformed_response", f"hash_type {answer.get('hash_type')!r}")
    # SHA1 is WeChat Pay's choice; it guards against truncation, not forgery.
    if hashlib.sha1(body, usedforsecurity=False).hexdigest() != expected.lower():
        raise ChannelUnavailable("settlement_file_hash_mismatch", "download again")


def parse_trade_bill(text: str, day: date) -> list[SettlementRecord]:
    """Parse a trade bill: a header row, rows whose cells start with a backtick, a summary.

    :raises ChannelError: ``settlement_file_malformed``, naming the line.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    columns: dict[str, int] | None = None
    width = 0
    records: list[SettlementRecord] = []
    try:
        for fields in reader:
            cells = [cell.strip().removeprefix("`").strip() for cell in fields]
            if not any(cells):
                continue
            if cells[0].startswith(BILL_SUMMARY_MARK):
                break
            if columns is None:
                columns, width = _bill_columns(cells, reader.line_num), len(cells)
                continue
            if len(cells) != width:
                raise _bill_error(reader.line_num, f"{len(cells)} cells, header has {width}")
            records.append(_bill_record(cells, columns, reader.line_num, day))
    except csv.Error as exc:
        raise _bill_error(reader.line_num, str(exc)) from exc
    if columns is None:
        raise _bill_error(1, "no header row")
    return records


def _bill_columns(header: list[str], line: int) -> dict[str, int]:
    missing = [name for name in BILL_COLUMNS.values() if name not in header]
    if missing:
        raise _bill_error(line, f"header lacks {', '.join(missing)}")
    return {key: header.index(name) for key, name in BILL_COLUMNS.items()}


def _bill_record(
    cells: list[str], columns: dict[str, int], line: int, day: date
) -> SettlementRecord:
    state = cells[columns["state"]]
    if state not in BILL_KINDS:
        raise _bill_error(line, f"unknown 交易状态 {state!r}")
    kind, amount_column = BILL_KINDS[state]
    out_trade_no = cells[columns["out_trade_no"]]
    if not out_trade_no:
        raise _bill_error(line, "empty 商户订单号")
    try:
        amount = parse_amount(cells[columns[amount_column]], allow_zero=True)
    except InvalidAmount as exc:
        raise _bill_error(line, f"bad {BILL_COLUMNS[amount_column]}: {exc}") from exc
    return SettlementRecord(
        out_trade_no=out_trade_no,
        channel_trade_no=cells[columns["channel_trade_no"]],
        amount=amount,
        kind=kind,
        settled_on=day,
    )


def _bill_error(line: int, detail: str) -> ChannelError:
    return ChannelError(SETTLEMENT_MALFORMED, f"line {line}: {detail}")
