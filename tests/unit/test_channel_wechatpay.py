"""WeChat Pay v3 adapter: notifications, HTTP against a local signed server, trade bills.

Everything the "WeChat Pay side" does here (message building, signing, AES-GCM
encryption, Authorization checks) is written again with ``cryptography`` directly,
so a mistake shared with the adapter cannot make both sides agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from repayments.channels.base import (
    CallbackRejected,
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    OrderRequest,
)
from repayments.channels.crypto import generate_key_pair
from repayments.channels.wechatpay import (
    WechatPayChannel,
    WechatPayConfig,
    authorization_header,
    fen_to_yuan,
    parse_authorization_header,
    parse_trade_bill,
    request_message,
    response_message,
    yuan_to_fen,
)
from repayments.domain.states import AttemptStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=SHANGHAI)
MCHID = "1900000001"
APPID = "wx0000000000000001"
MERCHANT_SERIAL = "5A1B0C0D0E0F1A2B3C4D5E6F"
PLATFORM_SERIAL = "PUB_KEY_ID_0112233445566778899"
APIV3_KEY = b"0123456789abcdef0123456789ABCDEF"
PREFIX = "/wechatpay"  # the sandbox mounts WeChat Pay under a path prefix


# --- Keys and config -----------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    merchant_private_path: Path
    platform_public_path: Path
    merchant_public: rsa.RSAPublicKey
    platform_private: rsa.RSAPrivateKey
    rogue_private: rsa.RSAPrivateKey


def _load_private(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _load_public(path: Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("wechatpay-keys")
    for name in ("merchant", "platform", "rogue"):
        generate_key_pair(base / f"{name}_private.pem", base / f"{name}_public.pem")
    return Keys(
        merchant_private_path=base / "merchant_private.pem",
        platform_public_path=base / "platform_public.pem",
        merchant_public=_load_public(base / "merchant_public.pem"),
        platform_private=_load_private(base / "platform_private.pem"),
        rogue_private=_load_private(base / "rogue_private.pem"),
    )


def make_channel(keys: Keys, api_url: str = "http://127.0.0.1:9", **overrides: Any):
    config = WechatPayConfig(
        mchid=MCHID,
        appid=APPID,
        api_url=api_url,
        merchant_private_key_path=str(keys.merchant_private_path),
        cert_serial=MERCHANT_SERIAL,
        platform_public_key_path=str(keys.platform_public_path),
        apiv3_key=APIV3_KEY.decode(),
        timeout=0.5,
    )
    return WechatPayChannel(replace(config, **overrides))


# --- An independent "WeChat Pay side" --------------------------------------------------


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def wechat_headers(
    private_key: rsa.RSAPrivateKey, body: bytes, timestamp: int, nonce: str = "Nc7f1a0e9"
) -> dict[str, str]:
    signed = str(timestamp).encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign(private_key, signed),
        "Wechatpay-Serial": PLATFORM_SERIAL,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def transaction(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "RP20260105000001",
        "transaction_id": "4200001234202601050000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "ICBC_DEBIT",
        "success_time": "2026-01-05T09:58:12+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 123456, "payer_total": 123456, "currency": "CNY"},
    }
    data.update(changes)
    return data


def encrypt(resource: dict[str, Any], key: bytes = APIV3_KEY) -> dict[str, str]:
    nonce, associated = b"fd1e2c3b4a59", "transaction"
    plaintext = json.dumps(resource, ensure_ascii=False).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated.encode())
    return {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "nonce": nonce.decode(),
        "associated_data": associated,
    }


def envelope(resource: dict[str, str], event_type: str = "TRANSACTION.SUCCESS") -> bytes:
    data = {
        "id": "EV-2026-0001",
        "create_time": "2026-01-05T09:58:13+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": resource,
    }
    return json.dumps(data, ensure_ascii=False).encode()


def notify(
    keys: Keys,
    body: bytes,
    *,
    age: int = 0,
    signer: rsa.RSAPrivateKey | None = None,
) -> InboundCallback:
    stamp = int(NOW.timestamp()) - age
    headers = wechat_headers(signer or keys.platform_private, body, stamp)
    return InboundCallback(body=body, headers=headers)


# --- Notifications ---------------------------------------------------------------------


def test_independently_built_notification_verifies_decrypts_and_parses(keys: Keys) -> None:
    body = envelope(encrypt(transaction()))

    result = make_channel(keys).parse_callback(notify(keys, body), now=NOW)

    assert result.out_trade_no == "RP20260105000001"
    assert result.status == AttemptStatus.SUCCEEDED
    assert result.channel_trade_no == "4200001234202601050000000001"
    assert result.amount == Decimal("1234.56")
    assert result.accepted_at == datetime(2026, 1, 5, 9, 58, 12, tzinfo=SHANGHAI)
    assert result.funding == "ICBC_DEBIT"
    assert result.raw["event_type"] == "TRANSACTION.SUCCESS"


def test_header_names_are_case_insensitive_and_serial_pin_is_honoured(keys: Keys) -> None:
    callback = notify(keys, envelope(encrypt(transaction())))
    lowered = InboundCallback(callback.body, {k.lower(): v for k, v in callback.headers.items()})

    pinned = make_channel(keys, platform_serial=PLATFORM_SERIAL)

    assert pinned.parse_callback(lowered, now=NOW).status == AttemptStatus.SUCCEEDED
    with pytest.raises(CallbackRejected, match="serial"):
        make_channel(keys, platform_serial="PUB_KEY_ID_other").parse_callback(lowered, now=NOW)


def test_body_changed_by_one_byte_after_signing_is_rejected(keys: Keys) -> None:
    callback = notify(keys, envelope(encrypt(transaction())))
    tampered = callback.body.replace(b"EV-2026-0001", b"EV-2026-0002")
    assert tampered != callback.body

    with pytest.raises(CallbackRejected, match="signature"):
        make_channel(keys).parse_callback(InboundCallback(tampered, callback.headers), now=NOW)


def test_notification_signed_with_another_key_is_rejected(keys: Keys) -> None:
    callback = notify(keys, envelope(encrypt(transaction())), signer=keys.rogue_private)

    with pytest.raises(CallbackRejected, match="signature"):
        make_channel(keys).parse_callback(callback, now=NOW)


@pytest.mark.parametrize("age", [301, -301])
def test_timestamp_outside_the_five_minute_window_is_rejected(keys: Keys, age: int) -> None:
    callback = notify(keys, envelope(encrypt(transaction())), age=age)

    with pytest.raises(CallbackRejected, match="replay window"):
        make_channel(keys).parse_callback(callback, now=NOW)


@pytest.mark.parametrize("age", [299, -299, 300])
def test_timestamp_inside_the_window_is_accepted(keys: Keys, age: int) -> None:
    callback = notify(keys, envelope(encrypt(transaction())), age=age)

    assert make_channel(keys).parse_callback(callback, now=NOW).status == AttemptStatus.SUCCEEDED


@pytest.mark.parametrize(
    "header",
    ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"],
)
def test_missing_signature_header_is_rejected(keys: Keys, header: str) -> None:
    callback = notify(keys, envelope(encrypt(transaction())))
    headers = {k: v for k, v in callback.headers.items() if k != header}

    with pytest.raises(CallbackRejected, match=header.lower()):
        make_channel(keys).parse_callback(InboundCallback(callback.body, headers), now=NOW)


def test_tampered_ciphertext_fails_the_gcm_tag_even_when_signed(keys: Keys) -> None:
    resource = encrypt(transaction())
    raw = bytearray(base64.b64decode(resource["ciphertext"]))
    raw[5] ^= 0x01
    resource["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    # Re-signed, so only the AES-GCM tag can catch it.
    callback = notify(keys, envelope(resource))

    with pytest.raises(CallbackRejected, match="AES-GCM"):
        make_channel(keys).parse_callback(callback, now=NOW)


def test_resource_encrypted_with_another_apiv3_key_is_rejected(keys: Keys) -> None:
    callback = notify(keys, envelope(encrypt(transaction(), key=b"X" * 32)))

    with pytest.raises(CallbackRejected, match="AES-GCM"):
        make_channel(keys).parse_callback(callback, now=NOW)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [({"mchid": "1900000999"}, "mchid"), ({"appid": "wx_foreign"}, "appid")],
)
def test_foreign_merchant_or_app_inside_the_resource_is_rejected(
    keys: Keys, changes: dict[str, str], pattern: str
) -> None:
    callback = notify(keys, envelope(encrypt(transaction(**changes))))

    with pytest.raises(CallbackRejected, match=pattern):
        make_channel(keys).parse_callback(callback, now=NOW)


def _renamed(old: str, new: str) -> dict[str, Any]:
    data = transaction()
    data[new] = data.pop(old)
    return data


@pytest.mark.parametrize(
    ("resource", "pattern"),
    [
        (_renamed("out_trade_no", "outTradeNo"), "out_trade_no is missing"),
        (_renamed("trade_state", "tradeState"), "trade_state is missing"),
        (transaction(trade_state="PAID_MAYBE"), "unknown trade_state"),
        (transaction(amount={"totalFee": 123456}), "amount.total"),
        (transaction(amount={"total": "1234.56"}), "amount.total"),
        (transaction(success_time="05/01/2026 09:58"), "success_time"),
    ],
)
def test_changed_field_inside_the_resource_is_unparseable(
    keys: Keys, resource: dict[str, Any], pattern: str
) -> None:
    callback = notify(keys, envelope(encrypt(resource)))

    with pytest.raises(CallbackUnparseable, match=pattern):
        make_channel(keys).parse_callback(callback, now=NOW)


def test_signed_body_that_is_not_json_is_unparseable(keys: Keys) -> None:
    with pytest.raises(CallbackUnparseable, match="not JSON"):
        make_channel(keys).parse_callback(notify(keys, b"<xml>SUCCESS</xml>"), now=NOW)


def test_refund_notification_still_reports_the_order_as_paid(keys: Keys) -> None:
    refund = {
        "mchid": MCHID,
        "out_trade_no": "RP20260105000001",
        "transaction_id": "4200001234202601050000000001",
        "out_refund_no": "RF1",
        "refund_id": "50000000382019052709732678859",
        "refund_status": "SUCCESS",
        "success_time": "2026-01-06T10:00:00+08:00",
        "amount": {"total": 123456, "refund": 123456, "payer_total": 123456, "payer_refund": 1},
    }
    callback = notify(keys, envelope(encrypt(refund), event_type="REFUND.SUCCESS"))

    result = make_channel(keys).parse_callback(callback, now=NOW)

    assert result.status == AttemptStatus.SUCCEEDED
    assert result.amount == Decimal("1234.56")
    assert result.accepted_at is None  # the refund's time is not the payment's
    assert result.raw["refund_status"] == "SUCCESS"


def test_callback_ack_is_an_empty_204(keys: Keys) -> None:
    ack = make_channel(keys).callback_ack()

    assert (ack.status, ack.body) == (204, b"")


# --- Message helpers and amounts ---------------------------------------------------------


def test_messages_end_every_line_with_a_newline() -> None:
    assert request_message("post", "/v3/x?a=1", 1700000000, "abc", b'{"k":1}') == (
        b'POST\n/v3/x?a=1\n1700000000\nabc\n{"k":1}\n'
    )
    assert request_message("GET", "/v3/y", "1", "n", "") == b"GET\n/v3/y\n1\nn\n\n"
    assert response_message("1700000000", "abc", "{}") == b"1700000000\nabc\n{}\n"


def test_authorization_header_fields_verify_with_the_merchant_public_key(keys: Keys) -> None:
    value = authorization_header(
        mchid=MCHID,
        serial_no=MERCHANT_SERIAL,
        private_key=_load_private(keys.merchant_private_path),
        method="GET",
        path_with_query="/v3/pay/transactions/out-trade-no/A1?mchid=1900000001",
        body=b"",
        timestamp=1700000000,
        nonce="N1",
    )

    fields = parse_authorization_header(value)

    assert value.startswith("WECHATPAY2-SHA256-RSA2048 mchid=")
    assert fields["mchid"] == MCHID
    assert fields["serial_no"] == MERCHANT_SERIAL
    assert (fields["timestamp"], fields["nonce_str"]) == ("1700000000", "N1")
    signed = b"GET\n/v3/pay/transactions/out-trade-no/A1?mchid=1900000001\n1700000000\nN1\n\n"
    keys.merchant_public.verify(
        base64.b64decode(fields["signature"]), signed, padding.PKCS1v15(), hashes.SHA256()
    )
    assert parse_authorization_header("Bearer abc") == {}


def test_yuan_and_fen_convert_exactly() -> None:
    assert yuan_to_fen(Decimal("1234.56")) == 123456
    assert yuan_to_fen(Decimal("0.01")) == 1
    assert yuan_to_fen(Decimal("5")) == 500
    assert fen_to_yuan(123456) == Decimal("1234.56")
    assert str(fen_to_yuan(100)) == "1.00"
    with pytest.raises(ValueError, match="fen"):
        yuan_to_fen(Decimal("0.005"))
    for bad in (12.5, True, "100", -1):
        with pytest.raises(ValueError, match="fen"):
            fen_to_yuan(bad)


def test_config_from_settings_reads_wechatpay_settings(settings: Any) -> None:
    settings.WECHATPAY_MCHID = "1900000777"
    settings.CHANNEL_TIMEOUT_SECONDS = 7

    config = WechatPayConfig.from_settings()

    assert (config.mchid, config.timeout, config.platform_serial) == ("1900000777", 7.0, "")


# --- A local WeChat Pay server ---------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    signer: rsa.RSAPrivateKey | None = None  # None: the platform key
    signed: bool = True
    drop: bool = False  # read the request, then hang up without answering


@dataclass
class Seen:
    method: str
    path: str
    body: bytes
    authorized: bool


@dataclass
class FakeWechatPay:
    """Checks each request's Authorization with the merchant public key; answers signed."""

    merchant_public: rsa.RSAPublicKey
    platform_private: rsa.RSAPrivateKey
    url: str = ""
    routes: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def reply(self, method: str, path: str, status: int = 200, data: Any = None, **kw: Any):
        body = b"" if data is None else json.dumps(data, ensure_ascii=False).encode()
        self.routes[(method, PREFIX + path)] = Reply(status=status, body=body, **kw)

    def authorized(self, method: str, path: str, body: bytes, header: str) -> bool:
        match = re.fullmatch(
            r'WECHATPAY2-SHA256-RSA2048 mchid="(\d+)",nonce_str="([^"]+)",'
            r'signature="([^"]+)",timestamp="(\d+)",serial_no="([^"]+)"',
            header,
        )
        if not match or match[1] != MCHID or match[5] != MERCHANT_SERIAL:
            return False
        signed = f"{method}\n{path}\n{match[4]}\n{match[2]}\n".encode() + body + b"\n"
        try:
            self.merchant_public.verify(
                base64.b64decode(match[3]), signed, padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return False
        return abs(time.time() - int(match[4])) < 60


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self, method: str) -> None:
        fake: FakeWechatPay = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = fake.authorized(method, self.path, body, self.headers.get("Authorization", ""))
        fake.seen.append(Seen(method, self.path, body, ok))
        reply = fake.routes.get((method, self.path), Reply(404, b'{"code":"NO_ROUTE"}'))
        if not ok:  # like WeChat Pay: an unsigned 401
            reply = Reply(401, b'{"code":"SIGN_ERROR","message":"bad signature"}', signed=False)
        time.sleep(reply.delay)
        if reply.drop:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            if reply.signed:
                stamp = int(time.time())
                for name, value in wechat_headers(
                    reply.signer or fake.platform_private, reply.body, stamp
                ).items():
                    self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (time-out tests)
            pass


@pytest.fixture
def wechat(keys: Keys) -> Iterator[FakeWechatPay]:
    fake = FakeWechatPay(keys.merchant_public, keys.platform_private)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def order(**changes: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "out_trade_no": "RP20260105000001",
        "amount": Decimal("1234.56"),
        "subject": "车贷还款 第3期",
        "notify_url": "https://portal.example.com/callbacks/wechatpay/",
        "method_type": "wechatpay_balance",
        "expires_at": datetime(2026, 1, 5, 10, 30, 15, 123456, tzinfo=SHANGHAI),
    }
    values.update(changes)
    return OrderRequest(**values)


QUERY = "/v3/pay/transactions/out-trade-no/RP20260105000001?mchid=1900000001"


def test_create_order_signs_the_request_and_returns_the_qr_code(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply("POST", "/v3/pay/transactions/native", data={"code_url": "weixin://wxpay/bz?pr=X"})

    created = make_channel(keys, wechat.url).create_order(order())

    assert (created.next_action.kind, created.next_action.value) == (
        "qr_code",
        "weixin://wxpay/bz?pr=X",
    )
    assert created.result.status == AttemptStatus.PENDING
    [request] = wechat.seen
    assert request.authorized
    sent = json.loads(request.body)
    assert sent["amount"] == {"total": 123456, "currency": "CNY"}
    assert (sent["appid"], sent["mchid"]) == (APPID, MCHID)
    assert sent["time_expire"] == "2026-01-05T10:30:15+08:00"
    assert sent["description"] == "车贷还款 第3期"


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "PARAM_ERROR", ChannelDeclined),
        (400, "INVALID_REQUEST", ChannelDeclined),
        (429, "FREQUENCY_LIMITED", ChannelUnavailable),
        (500, "SYSTEM_ERROR", ChannelUnavailable),
    ],
)
def test_create_order_errors_are_classified(
    keys: Keys, wechat: FakeWechatPay, status: int, code: str, error: type[ChannelError]
) -> None:
    wechat.reply("POST", "/v3/pay/transactions/native", status, {"code": code, "message": "x"})

    with pytest.raises(error) as caught:
        make_channel(keys, wechat.url).create_order(order())

    assert type(caught.value) is error
    assert caught.value.code == code


def test_create_order_timing_out_after_sending_is_outcome_unknown(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply("POST", "/v3/pay/transactions/native", data={"code_url": "x"}, delay=1.0)
    started = time.monotonic()

    with pytest.raises(ChannelOutcomeUnknown, match="no_answer"):
        make_channel(keys, wechat.url).create_order(order())

    assert time.monotonic() - started < 0.9
    assert wechat.seen  # it did arrive: that is why the outcome is unknown


def test_create_order_connection_dropped_after_sending_is_outcome_unknown(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply("POST", "/v3/pay/transactions/native", data={"code_url": "x"}, drop=True)

    with pytest.raises(ChannelOutcomeUnknown, match="no_answer"):
        make_channel(keys, wechat.url).create_order(order())

    assert wechat.seen


def test_create_order_answer_signed_by_another_key_is_outcome_unknown(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply(
        "POST", "/v3/pay/transactions/native", data={"code_url": "x"}, signer=keys.rogue_private
    )

    with pytest.raises(ChannelOutcomeUnknown, match="bad_signature"):
        make_channel(keys, wechat.url).create_order(order())


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("SUCCESS", AttemptStatus.SUCCEEDED),
        ("REFUND", AttemptStatus.SUCCEEDED),
        ("NOTPAY", AttemptStatus.PENDING),
        ("USERPAYING", AttemptStatus.PENDING),
        ("CLOSED", AttemptStatus.CLOSED),
        ("REVOKED", AttemptStatus.CLOSED),
        ("PAYERROR", AttemptStatus.FAILED),
    ],
)
def test_query_maps_each_trade_state(
    keys: Keys, wechat: FakeWechatPay, trade_state: str, status: AttemptStatus
) -> None:
    wechat.reply("GET", QUERY, data=transaction(trade_state=trade_state))

    result = make_channel(keys, wechat.url).query("RP20260105000001")

    assert result.status == status
    assert result.amount == Decimal("1234.56")
    assert result.channel_trade_no == "4200001234202601050000000001"
    assert result.raw["trade_state"] == trade_state
    assert result.failure_code == ("PAYERROR" if trade_state == "PAYERROR" else "")
    assert wechat.seen[0].authorized


def test_query_of_an_unpaid_order_without_amount_is_pending(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    unpaid = transaction(trade_state="NOTPAY", amount={"payer_currency": "CNY"})
    for key in ("transaction_id", "success_time", "bank_type"):
        unpaid.pop(key)
    wechat.reply("GET", QUERY, data=unpaid)

    result = make_channel(keys, wechat.url).query("RP20260105000001")

    assert (result.status, result.amount, result.accepted_at) == (AttemptStatus.PENDING, None, None)


def test_query_order_not_exist_is_pending(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply("GET", QUERY, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})

    result = make_channel(keys, wechat.url).query("RP20260105000001")

    assert (result.status, result.failure_code) == (AttemptStatus.PENDING, "ORDER_NOT_EXIST")


@pytest.mark.parametrize(
    "reply",
    [{"signer": "rogue"}, {"signed": False}],
    ids=["wrong-key", "unsigned"],
)
def test_query_answer_without_a_valid_signature_is_refused(
    keys: Keys, wechat: FakeWechatPay, reply: dict[str, Any]
) -> None:
    if reply.get("signer") == "rogue":
        reply = {"signer": keys.rogue_private}
    wechat.reply("GET", QUERY, data=transaction(), **reply)

    with pytest.raises(ChannelUnavailable, match="bad_signature"):
        make_channel(keys, wechat.url).query("RP20260105000001")


def test_query_with_unknown_trade_state_is_unavailable(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply("GET", QUERY, data=transaction(trade_state="SOMETHING_NEW"))

    with pytest.raises(ChannelUnavailable, match="unknown trade_state"):
        make_channel(keys, wechat.url).query("RP20260105000001")


def test_query_on_a_refused_connection_is_unavailable(keys: Keys) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(ChannelUnavailable, match="unreachable"):
        make_channel(keys, f"http://127.0.0.1:{port}/wechatpay").query("RP20260105000001")


CLOSE = "/v3/pay/transactions/out-trade-no/RP20260105000001/close"


def test_close_sends_the_mchid_and_accepts_204(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply("POST", CLOSE, 204)

    make_channel(keys, wechat.url).close("RP20260105000001")

    assert json.loads(wechat.seen[0].body) == {"mchid": MCHID}
    assert wechat.seen[0].authorized


def test_close_of_a_paid_order_is_declined_as_already_paid(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply("POST", CLOSE, 400, {"code": "ORDER_PAID", "message": "订单已支付"})

    with pytest.raises(ChannelDeclined) as caught:
        make_channel(keys, wechat.url).close("RP20260105000001")

    assert caught.value.code == "already_paid"


def test_refund_sends_the_amount_as_refund_and_total(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply(
        "POST",
        "/v3/refund/domestic/refunds",
        data={"refund_id": "5000000038", "out_refund_no": "RF1", "status": "PROCESSING"},
    )

    result = make_channel(keys, wechat.url).refund(
        out_trade_no="RP20260105000001", refund_no="RF1", amount=Decimal("1234.56"), reason="重复"
    )

    assert (result.succeeded, result.channel_refund_no) == (True, "5000000038")
    sent = json.loads(wechat.seen[0].body)
    assert sent["amount"] == {"refund": 123456, "total": 123456, "currency": "CNY"}
    assert (sent["out_refund_no"], sent["reason"]) == ("RF1", "重复")


def test_refund_system_error_is_outcome_unknown(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply("POST", "/v3/refund/domestic/refunds", 500, {"code": "SYSTEM_ERROR"})

    with pytest.raises(ChannelOutcomeUnknown):
        make_channel(keys, wechat.url).refund(
            out_trade_no="RP1", refund_no="RF1", amount=Decimal("1.00"), reason=""
        )


# --- Trade bills ---------------------------------------------------------------------------

BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)


def bill_row(trade_no: str, out_trade_no: str, state: str, paid: str, refunded: str) -> str:
    cells = [
        "2026-01-05 09:58:12", APPID, MCHID, "0", "", trade_no, out_trade_no, "oUpF8u", "NATIVE",
        state, "ICBC_DEBIT", "CNY", paid, "0.00", "5000000038" if refunded != "0.00" else "",
        "RF1" if refunded != "0.00" else "", refunded, "0.00", "ORIGINAL" if refunded != "0.00"
        else "", "SUCCESS" if refunded != "0.00" else "", "车贷还款", "", "0.00", "0.60%",
        paid, refunded, "",
    ]  # fmt: skip
    return ",".join(f"`{cell}" for cell in cells)


def bill(*rows: str) -> str:
    summary = (
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
        "申请退款总金额"
    )
    totals = "`2,`1234.56,`100.00,`0.00,`0.00,`1234.56,`100.00"
    return "\n".join([BILL_HEADER, *rows, summary, totals]) + "\n"


GOOD_BILL = bill(
    bill_row("4200000001", "RP20260105000001", "SUCCESS", "1234.56", "0.00"),
    bill_row("4200000002", "RP20260104000009", "REFUND", "0.00", "100.00"),
)


def test_trade_bill_rows_become_payment_and_refund_records() -> None:
    records = parse_trade_bill(GOOD_BILL, date(2026, 1, 5))

    assert [(r.out_trade_no, r.channel_trade_no, r.amount, r.kind) for r in records] == [
        ("RP20260105000001", "4200000001", Decimal("1234.56"), "payment"),
        ("RP20260104000009", "4200000002", Decimal("100.00"), "refund"),
    ]
    assert {r.settled_on for r in records} == {date(2026, 1, 5)}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (bill(bill_row("42", "RP1", "SUCCESS", "12.345", "0.00")), "line 2"),
        (bill(bill_row("42", "RP1", "SUCCESS", "abc", "0.00")), "line 2"),
        (bill(bill_row("42", "RP1", "SUCCESS", "1.00", "0.00"), "`a,`b"), "line 3"),
        (bill(bill_row("42", "RP1", "WHATEVER", "1.00", "0.00")), "line 2"),
        (bill(bill_row("42", "", "SUCCESS", "1.00", "0.00")), "line 2"),
        (GOOD_BILL.replace("商户订单号", "商户单号", 1), "line 1"),
        ("", "line 1"),
    ],
)
def test_malformed_trade_bill_names_the_line(text: str, line: str) -> None:
    with pytest.raises(ChannelError) as caught:
        parse_trade_bill(text, date(2026, 1, 5))

    assert caught.value.code == "settlement_file_malformed"
    assert caught.value.message.startswith(f"{line}:")


def test_fetch_settlement_file_downloads_the_bill_and_checks_its_hash(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    content = GOOD_BILL.encode()
    download = f"{wechat.url}/v3/billdownload/file?token=T1"
    wechat.reply(
        "GET",
        "/v3/bill/tradebill?bill_date=2026-01-05",
        data={
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": download,
        },
    )
    wechat.routes[("GET", f"{PREFIX}/v3/billdownload/file?token=T1")] = Reply(
        body=content, signed=False
    )

    records = make_channel(keys, wechat.url).fetch_settlement_file(date(2026, 1, 5))

    assert [r.kind for r in records] == ["payment", "refund"]
    assert all(seen.authorized for seen in wechat.seen)


def test_settlement_file_not_matching_its_hash_is_unavailable(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply(
        "GET",
        "/v3/bill/tradebill?bill_date=2026-01-05",
        data={
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(b"other").hexdigest(),
            "download_url": f"{wechat.url}/v3/billdownload/file?token=T1",
        },
    )
    wechat.routes[("GET", f"{PREFIX}/v3/billdownload/file?token=T1")] = Reply(
        body=GOOD_BILL.encode(), signed=False
    )

    with pytest.raises(ChannelUnavailable, match="hash_mismatch"):
        make_channel(keys, wechat.url).fetch_settlement_file(date(2026, 1, 5))


def test_settlement_download_url_on_another_host_is_refused(
    keys: Keys, wechat: FakeWechatPay
) -> None:
    wechat.reply(
        "GET",
        "/v3/bill/tradebill?bill_date=2026-01-05",
        data={"download_url": "https://evil.example.com/bill"},
    )

    with pytest.raises(ChannelUnavailable, match="download_url"):
        make_channel(keys, wechat.url).fetch_settlement_file(date(2026, 1, 5))


def test_expires_at_must_be_aware(keys: Keys) -> None:
    naive = order(expires_at=datetime(2026, 1, 5, 10, 30))

    with pytest.raises(ValueError, match="aware"):
        make_channel(keys).create_order(naive)


def test_utc_expiry_is_sent_with_its_offset(keys: Keys, wechat: FakeWechatPay) -> None:
    wechat.reply("POST", "/v3/pay/transactions/native", data={"code_url": "weixin://x"})
    expires = datetime(2026, 1, 5, 2, 30, tzinfo=UTC) + timedelta(seconds=15)

    make_channel(keys, wechat.url).create_order(order(expires_at=expires))

    assert json.loads(wechat.seen[0].body)["time_expire"] == "2026-01-05T02:30:15+00:00"
