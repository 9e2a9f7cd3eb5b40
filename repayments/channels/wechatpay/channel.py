"""The WeChat Pay adapter: Native orders, query, close, refund, notify and the trade bill."""

from __future__ import annotations

import json
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
from repayments.channels.wechatpay.bills import check_bill_hash, parse_trade_bill
from repayments.channels.wechatpay.protocol import (
    CURRENCY,
    NOTIFY_HEADERS,
    REPLAY_WINDOW_SECONDS,
    SCHEMA,
    SETTLEMENT_MALFORMED,
    Answer,
    Malformed,
    authorization_header,
    json_object,
    refund_notice_result,
    response_message,
    rfc3339,
    trade_result,
    transport_error,
    yuan_to_fen,
)
from repayments.domain.states import AttemptStatus


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
            payload["time_expire"] = rfc3339(request.expires_at)
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
            result = trade_result(answer.json(), amount_required=False)
        except Malformed as exc:
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
        self,
        *,
        out_trade_no: str,
        refund_no: str,
        amount: Decimal,
        reason: str,
        placed_at: datetime | None = None,
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
        del placed_at  # WeChat Pay finds an order by its number alone
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
        envelope = json_object(callback.body, "notification body")
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
                return refund_notice_result(resource, event_type)
            return trade_result(resource, amount_required=True, event_type=event_type)
        except Malformed as exc:
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
        check_bill_hash(file.body, data)
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
    ) -> Answer:
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
            raise transport_error(exc, uncertain) from exc
        answer = Answer(response.status_code, response.content)
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

    def _answer_trusted(self, headers: Mapping[str, str], answer: Answer) -> bool:
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
        return json_object(plaintext, "decrypted resource")
