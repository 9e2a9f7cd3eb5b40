"""UnionPay ACP withholding adapter against an independent signer and a real local server.

The signer and the fake gateway below re-implement the ACP 5.1.0 signature from
the protocol description (canonical string, SHA-256 hex, SHA256withRSA) with
``cryptography`` directly, so a shared bug in the adapter's helpers cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from repayments.channels.base import (
    CallbackRejected,
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    OrderRequest,
    PaymentChannel,
)
from repayments.channels.crypto import generate_key_pair
from repayments.channels.unionpay import (
    ORDER_NOT_FOUND,
    UnionPayChannel,
    UnionPayConfig,
    canonical_string,
    parse_form,
    parse_settlement_file,
    sign_fields,
    verify_fields,
)
from repayments.domain.states import AttemptStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 1, 5, 10, 0, 0, tzinfo=SHANGHAI)
MER_ID = "777290058110048"
ORDER = "AX20260105A1B2C3D4E5F6A7B8C9D0"
TOKEN = "6f3a9c0e1d2b4a58"


# --- Independent ACP signer ---------------------------------------------------------


def acp_digest(fields: dict[str, str]) -> bytes:
    canonical = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest().encode("ascii")


def acp_sign(fields: dict[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    raw = key.sign(acp_digest(fields), padding.PKCS1v15(), hashes.SHA256())
    return {**fields, "signature": base64.b64encode(raw).decode()}


def acp_verify(fields: dict[str, str], key: rsa.RSAPublicKey) -> bool:
    try:
        key.verify(
            base64.b64decode(fields["signature"]),
            acp_digest(fields),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Keys:
    merchant_private_path: Path
    platform_public_path: Path
    merchant_public: rsa.RSAPublicKey
    platform_private: rsa.RSAPrivateKey
    stranger_private: rsa.RSAPrivateKey


def _pair(folder: Path, name: str) -> tuple[Path, Path]:
    private, public = folder / f"{name}_private.pem", folder / f"{name}_public.pem"
    generate_key_pair(private, public)
    return private, public


def _private(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("unionpay_keys")
    merchant_private, merchant_public = _pair(folder, "merchant")
    platform_private, platform_public = _pair(folder, "platform")
    stranger_private, _ = _pair(folder, "stranger")
    public = serialization.load_pem_public_key(merchant_public.read_bytes())
    assert isinstance(public, rsa.RSAPublicKey)
    return Keys(
        merchant_private_path=merchant_private,
        platform_public_path=platform_public,
        merchant_public=public,
        platform_private=_private(platform_private),
        stranger_private=_private(stranger_private),
    )


def make_channel(
    keys: Keys, api_url: str = "http://127.0.0.1:9/unionpay", moment: datetime = NOW
) -> UnionPayChannel:
    """The adapter with its clock stopped at ``moment``."""
    config = UnionPayConfig(
        mer_id=MER_ID,
        api_url=api_url,
        merchant_private_key_path=str(keys.merchant_private_path),
        platform_public_key_path=str(keys.platform_public_path),
        timeout=0.5,
    )
    return UnionPayChannel(config, clock=lambda: moment)


# --- Fake UnionPay gateway ---------------------------------------------------------


@dataclass
class Reply:
    fields: dict[str, str]
    signer: rsa.RSAPrivateKey | None = None  # None: the platform key
    unsigned: bool = False
    status: int = 200
    delay: float = 0.0
    hang_up: bool = False  # close the connection without answering


Responder = Callable[[str, dict[str, str]], Reply]


@dataclass
class FakeGateway:
    keys: Keys
    url: str = ""
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    responder: Responder | None = None
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, request: dict[str, str], **overrides: str) -> Reply:
        """A realistic answer echoing the request, with ``overrides`` applied."""
        echoed = "version encoding signMethod txnType txnSubType bizType accessType merId"
        fields = {k: request[k] for k in f"{echoed} orderId txnTime txnAmt".split() if k in request}
        fields |= {"queryId": "Q202601051000000001", "traceTime": "0105100003"}
        fields |= {"respCode": "00", "respMsg": "success"}
        return Reply(fields | overrides)

    def paths(self) -> list[str]:
        return [path.removeprefix("/unionpay/gateway/api/") for path, _ in self.calls]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        fake.calls.append((self.path, request))
        if not acp_verify(request, fake.keys.merchant_public):
            reply = Reply({"merId": MER_ID, "respCode": "11", "respMsg": "bad signature"})
        else:
            assert fake.responder is not None
            reply = fake.responder(self.path, request)
        if reply.delay:
            fake.release.wait(reply.delay)
        if reply.hang_up:
            return  # HTTP/1.0: the connection closes with no status line
        fields = reply.fields
        if not reply.unsigned:
            fields = acp_sign(fields, reply.signer or fake.keys.platform_private)
        payload = urlencode(fields).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (time-out test)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeGateway


@pytest.fixture
def gateway(keys: Keys) -> Iterator[FakeGateway]:
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeGateway(keys=keys, url=f"http://127.0.0.1:{server.server_address[1]}/unionpay")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


@pytest.fixture
def channel(keys: Keys, gateway: FakeGateway) -> UnionPayChannel:
    return make_channel(keys, gateway.url)


def order(token: str = TOKEN, amount: str = "123.45") -> OrderRequest:
    return OrderRequest(
        out_trade_no=ORDER,
        amount=Decimal(amount),
        subject="2026-01 installment",
        notify_url="https://portal.example/callbacks/unionpay",
        method_type="bank_card",
        card_token=token,
    )


def respond_with(gateway: FakeGateway, **overrides: str) -> None:
    gateway.responder = lambda _path, request: gateway.answer(request, **overrides)


# --- Message format ----------------------------------------------------------------


def test_canonical_string_sorts_keys_and_leaves_out_signature() -> None:
    fields = {"txnAmt": "100", "merId": "M", "signature": "xx", "bizType": "000501"}
    assert canonical_string(fields) == "bizType=000501&merId=M&txnAmt=100"


def test_sign_fields_verifies_independently_and_drops_blank_values(keys: Keys) -> None:
    merchant = _private(keys.merchant_private_path)
    signed = sign_fields({"orderId": ORDER, "txnAmt": "100", "reqReserved": ""}, merchant)
    assert "reqReserved" not in signed
    assert acp_verify(signed, keys.merchant_public)
    assert verify_fields(signed, keys.merchant_public)
    assert not verify_fields({**signed, "txnAmt": "101"}, keys.merchant_public)
    assert not verify_fields({"orderId": ORDER}, keys.merchant_public)


def test_parse_form_refuses_repeated_keys_and_bad_pieces() -> None:
    assert parse_form(b"a=1&b=") == {"a": "1", "b": ""}
    with pytest.raises(ValueError, match="repeated"):
        parse_form(b"respCode=64&respCode=00")
    with pytest.raises(ValueError, match="bad query field"):
        parse_form(b"a=1&b")
    with pytest.raises(UnicodeDecodeError):
        parse_form(b"a=%FF")


def test_channel_satisfies_the_interface(keys: Keys) -> None:
    adapter: PaymentChannel = make_channel(keys)
    assert adapter.name == "unionpay"
    ack = adapter.callback_ack()
    assert (ack.status, ack.body, ack.content_type) == (200, b"ok", "text/plain")


def test_config_from_settings(settings: Any) -> None:
    settings.UNIONPAY_MER_ID = "777000000000001"
    settings.UNIONPAY_API_URL = "http://sandbox.test/unionpay/"
    settings.CHANNEL_TIMEOUT_SECONDS = 7
    config = UnionPayConfig.from_settings()
    assert config.mer_id == "777000000000001"
    assert config.api_url == "http://sandbox.test/unionpay"
    assert config.timeout == 7.0


# --- Callbacks -----------------------------------------------------------------------


def notification(**overrides: str) -> dict[str, str]:
    fields = {
        "version": "5.1.0",
        "encoding": "UTF-8",
        "signMethod": "01",
        "txnType": "11",
        "txnSubType": "00",
        "bizType": "000501",
        "accessType": "0",
        "merId": MER_ID,
        "orderId": ORDER,
        "txnTime": "20260105095958",
        "txnAmt": "12345",
        "currencyCode": "156",
        "queryId": "Q202601050959580001",
        "traceTime": "0105100002",
        "respCode": "00",
        "respMsg": "成功[0000000]",
    }
    return fields | overrides


def callback(fields: dict[str, str]) -> InboundCallback:
    return InboundCallback(
        body=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_independently_signed_callback_verifies_and_parses(keys: Keys) -> None:
    signed = acp_sign(notification(), keys.platform_private)
    result = make_channel(keys).parse_callback(callback(signed), now=NOW)
    assert result.out_trade_no == ORDER
    assert result.status == AttemptStatus.SUCCEEDED
    assert result.amount == Decimal("123.45")
    assert result.channel_trade_no == "Q202601050959580001"
    assert result.accepted_at == datetime(2026, 1, 5, 10, 0, 2, tzinfo=SHANGHAI)
    assert result.raw["respMsg"] == "成功[0000000]"


@pytest.mark.parametrize(
    ("code", "status", "failure_code"),
    [
        ("64", AttemptStatus.FAILED, "64"),
        ("05", AttemptStatus.PENDING, ""),
        ("99", AttemptStatus.UNKNOWN, "99"),
        ("42", AttemptStatus.UNKNOWN, "42"),  # debited but late: never "failed"
    ],
)
def test_callback_result_codes(
    keys: Keys, code: str, status: AttemptStatus, failure_code: str
) -> None:
    signed = acp_sign(notification(respCode=code), keys.platform_private)
    result = make_channel(keys).parse_callback(callback(signed), now=NOW)
    assert (result.status, result.failure_code) == (status, failure_code)


@pytest.mark.parametrize(
    "tamper",
    [
        {"txnAmt": "1"},
        {"respCode": "00"},  # a signed decline turned into a success
        {"orderId": "AX20260105FFFFFFFFFFFFFFFFFFFF"},
    ],
)
def test_tampered_callback_is_rejected(keys: Keys, tamper: dict[str, str]) -> None:
    signed = acp_sign(notification(respCode="64"), keys.platform_private)
    with pytest.raises(CallbackRejected):
        make_channel(keys).parse_callback(callback(signed | tamper), now=NOW)


def test_callback_signed_with_another_key_is_rejected(keys: Keys) -> None:
    signed = acp_sign(notification(), keys.stranger_private)
    with pytest.raises(CallbackRejected):
        make_channel(keys).parse_callback(callback(signed), now=NOW)


def test_callback_for_a_foreign_merchant_is_rejected(keys: Keys) -> None:
    signed = acp_sign(notification(merId="777290058199999"), keys.platform_private)
    with pytest.raises(CallbackRejected, match="merchant"):
        make_channel(keys).parse_callback(callback(signed), now=NOW)


def test_unsigned_or_ambiguous_callback_is_rejected(keys: Keys) -> None:
    channel = make_channel(keys)
    with pytest.raises(CallbackRejected):
        channel.parse_callback(callback(notification()), now=NOW)
    signed = acp_sign(notification(respCode="64"), keys.platform_private)
    doubled = InboundCallback(body=callback(signed).body + b"&respCode=00", headers={})
    with pytest.raises(CallbackRejected):
        channel.parse_callback(doubled, now=NOW)


def _renamed(fields: dict[str, str], old: str, new: str) -> dict[str, str]:
    return {new if k == old else k: v for k, v in fields.items()}


@pytest.mark.parametrize(
    "fields",
    [
        _renamed(notification(), "orderId", "orderNo"),
        _renamed(notification(), "respCode", "resultCode"),
        _renamed(notification(), "txnAmt", "amount"),
        notification(txnAmt="123.45"),
        notification(txnAmt="-100"),
        notification(txnTime="2026-01-05 09:59"),
        notification(txnType="04"),  # a refund notification: not a withholding result
    ],
)
def test_verified_but_changed_callback_is_unparseable(keys: Keys, fields: dict[str, str]) -> None:
    signed = acp_sign(fields, keys.platform_private)
    with pytest.raises(CallbackUnparseable):
        make_channel(keys).parse_callback(callback(signed), now=NOW)


# --- Withholding over HTTP -----------------------------------------------------------


def test_synchronous_00_is_accepted_not_yet_settled(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    # A back-end debit answered "00" is accepted; only the notify or a query settles it.
    respond_with(gateway)
    created = channel.create_order(order())
    assert created.next_action.kind == "none"
    result = created.result
    assert result.status == AttemptStatus.PENDING
    assert result.channel_trade_no == "Q202601051000000001"
    assert result.amount == Decimal("123.45")
    assert result.accepted_at is None


def test_withholding_request_is_signed_and_carries_only_the_token(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway)
    channel.create_order(order())
    [(path, sent)] = gateway.calls
    assert path == "/unionpay/gateway/api/backTransReq.do"
    assert acp_verify(sent, gateway.keys.merchant_public)
    assert "accNo" not in sent
    assert sent["tokenPayData"] == f"{{token={TOKEN}}}"
    assert sent["txnAmt"] == "12345"
    assert sent["txnTime"] == "20260105100000"
    expected = {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "11"}
    expected |= {"bizType": "000501", "accessType": "0", "currencyCode": "156"}
    expected |= {"merId": MER_ID, "orderId": ORDER}
    assert expected.items() <= sent.items()
    assert sent["backUrl"] == "https://portal.example/callbacks/unionpay"


@pytest.mark.parametrize(
    ("code", "status", "failure_code"),
    [
        ("64", AttemptStatus.FAILED, "64"),  # insufficient funds
        ("63", AttemptStatus.FAILED, "63"),  # card frozen
        ("05", AttemptStatus.PENDING, ""),
        ("03", AttemptStatus.PENDING, ""),
        ("99", AttemptStatus.UNKNOWN, "99"),
        ("12", AttemptStatus.UNKNOWN, "12"),  # duplicate order: the first may have debited
        ("06", AttemptStatus.UNKNOWN, "06"),  # system busy
    ],
)
def test_withholding_answer_codes(
    channel: UnionPayChannel,
    gateway: FakeGateway,
    code: str,
    status: AttemptStatus,
    failure_code: str,
) -> None:
    respond_with(gateway, respCode=code)
    result = channel.create_order(order()).result
    assert (result.status, result.failure_code) == (status, failure_code)
    if status == AttemptStatus.FAILED:
        assert result.failure_message


def test_insufficient_funds_message(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    respond_with(gateway, respCode="64", respMsg="卡上的余额不足")
    result = channel.create_order(order()).result
    assert result.failure_message == "insufficient funds"
    assert result.accepted_at is None


def test_timeout_after_sending_is_outcome_unknown(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    gateway.responder = lambda _path, request: Reply(gateway.answer(request).fields, delay=3)
    with pytest.raises(ChannelOutcomeUnknown):
        channel.create_order(order())
    assert len(gateway.calls) == 1  # it did arrive: money may have moved


def test_connection_dropped_after_sending_is_outcome_unknown(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    # Also a requests.ConnectionError, like "refused": only the cause tells them apart.
    gateway.responder = lambda _path, request: Reply({}, hang_up=True)
    with pytest.raises(ChannelOutcomeUnknown):
        channel.create_order(order())
    with pytest.raises(ChannelUnavailable):
        channel.query(ORDER)  # a read: nothing can have moved


def test_refused_connection_is_unavailable(keys: Keys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = make_channel(keys, f"http://127.0.0.1:{port}/unionpay")
    with pytest.raises(ChannelUnavailable):
        channel.create_order(order())


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda fake, request: Reply(fake.answer(request).fields, unsigned=True)),
        pytest.param(
            lambda fake, request: Reply(
                fake.answer(request).fields, signer=fake.keys.stranger_private
            )
        ),
        pytest.param(lambda fake, request: Reply(fake.answer(request).fields, status=502)),
        pytest.param(lambda fake, request: fake.answer(request, orderId="AX2026010500000000")),
    ],
    ids=["unsigned", "wrong-key", "http-502", "other-order"],
)
def test_untrustworthy_withholding_answer_is_outcome_unknown(
    channel: UnionPayChannel,
    gateway: FakeGateway,
    reply: Callable[[FakeGateway, dict[str, str]], Reply],
) -> None:
    gateway.responder = lambda _path, request: reply(gateway, request)
    with pytest.raises(ChannelOutcomeUnknown):
        channel.create_order(order())


def test_no_card_token_is_declined_before_sending(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    with pytest.raises(ChannelDeclined) as caught:
        channel.create_order(order(token=""))
    assert caught.value.code == "no_card_token"
    with pytest.raises(ChannelDeclined):
        channel.create_order(order(token="tok&accNo=6222020000000000000"))
    with pytest.raises(ChannelDeclined):
        channel.create_order(order(amount="1.001"))
    assert gateway.calls == []


def test_missing_key_is_unavailable_before_sending(keys: Keys, gateway: FakeGateway) -> None:
    config = UnionPayConfig(MER_ID, gateway.url, "/nonexistent/key.pem", "/nonexistent.pem", 0.5)
    with pytest.raises(ChannelUnavailable):
        UnionPayChannel(config).create_order(order())
    assert gateway.calls == []


# --- Query -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orig", "status", "failure_code"),
    [
        ("00", AttemptStatus.SUCCEEDED, ""),
        ("05", AttemptStatus.PENDING, ""),
        ("64", AttemptStatus.FAILED, "64"),
        ("99", AttemptStatus.UNKNOWN, "99"),
    ],
)
def test_query_maps_orig_resp_code(
    channel: UnionPayChannel,
    gateway: FakeGateway,
    orig: str,
    status: AttemptStatus,
    failure_code: str,
) -> None:
    respond_with(gateway, respCode="00", origRespCode=orig, txnAmt="12345")
    result = channel.query(ORDER)
    assert (result.status, result.failure_code) == (status, failure_code)
    [(path, sent)] = gateway.calls
    assert path.endswith("/gateway/api/queryTrans.do")
    assert (sent["txnType"], sent["orderId"]) == ("00", ORDER)


def test_query_sends_the_original_txn_time_when_known(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway, origRespCode="00")
    channel.query(ORDER, placed_at=NOW - timedelta(minutes=3))
    assert gateway.calls[0][1]["txnTime"] == "20260105095700"


@pytest.mark.parametrize(
    ("placed_at", "status"),
    [
        (NOW - timedelta(minutes=9), AttemptStatus.PENDING),  # may still be in flight
        (NOW - timedelta(minutes=10), AttemptStatus.FAILED),  # never arrived: safe to retry
        (None, AttemptStatus.PENDING),  # age unknown: do not guess
    ],
)
def test_query_order_not_found(
    channel: UnionPayChannel,
    gateway: FakeGateway,
    placed_at: datetime | None,
    status: AttemptStatus,
) -> None:
    respond_with(gateway, respCode="34", respMsg="查无此交易")
    result = channel.query(ORDER, placed_at=placed_at)
    assert (result.status, result.failure_code) == (status, ORDER_NOT_FOUND)


def test_query_failures_are_unavailable(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    gateway.responder = lambda _path, request: Reply(
        gateway.answer(request, origRespCode="00").fields, signer=gateway.keys.stranger_private
    )
    with pytest.raises(ChannelUnavailable):
        channel.query(ORDER)
    respond_with(gateway, respCode="37")  # too many queries: says nothing about the order
    with pytest.raises(ChannelUnavailable):
        channel.query(ORDER)
    respond_with(gateway, respCode="00")  # origRespCode missing
    with pytest.raises(ChannelUnavailable):
        channel.query(ORDER)


def test_query_timeout_is_unavailable(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    gateway.responder = lambda _path, request: Reply(gateway.answer(request).fields, delay=3)
    with pytest.raises(ChannelUnavailable):
        channel.query(ORDER)


# --- Close (cancel) and refund ------------------------------------------------------


def scripted(gateway: FakeGateway, replies: dict[str, list[dict[str, str]]]) -> None:
    """Answer each endpoint with the next overrides from its list."""

    def respond(path: str, request: dict[str, str]) -> Reply:
        endpoint = path.rsplit("/", 1)[-1]
        return gateway.answer(request, **replies[endpoint].pop(0))

    gateway.responder = respond


def test_close_of_a_settled_order_is_declined_without_cancelling(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway, origRespCode="00")
    with pytest.raises(ChannelDeclined) as caught:
        channel.close(ORDER)
    assert caught.value.code == "already_paid"
    assert gateway.paths() == ["queryTrans.do"]


def test_close_cancels_a_pending_order(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    scripted(
        gateway,
        {
            "queryTrans.do": [{"origRespCode": "05", "txnAmt": "12345"}],
            "backTransReq.do": [{"respCode": "00"}],
        },
    )
    channel.close(ORDER)
    assert gateway.paths() == ["queryTrans.do", "backTransReq.do"]
    cancel = gateway.calls[1][1]
    assert (cancel["txnType"], cancel["origQryId"], cancel["txnAmt"]) == (
        "31",
        "Q202601051000000001",
        "12345",
    )
    assert cancel["orderId"] != ORDER


def test_close_when_the_order_settled_meanwhile_is_declined(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    scripted(
        gateway,
        {
            "queryTrans.do": [{"origRespCode": "05"}, {"origRespCode": "00"}],
            "backTransReq.do": [{"respCode": "35"}],
        },
    )
    with pytest.raises(ChannelDeclined) as caught:
        channel.close(ORDER)
    assert caught.value.code == "already_paid"


def test_close_of_a_failed_order_needs_no_cancel(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway, origRespCode="64")
    channel.close(ORDER)
    assert gateway.paths() == ["queryTrans.do"]


def test_close_with_unknown_cancel_outcome(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    scripted(
        gateway,
        {"queryTrans.do": [{"origRespCode": "05"}], "backTransReq.do": [{"respCode": "05"}]},
    )
    with pytest.raises(ChannelOutcomeUnknown):
        channel.close(ORDER)


def test_refund(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    scripted(
        gateway,
        {
            "queryTrans.do": [{"origRespCode": "00", "txnAmt": "12345"}],
            "backTransReq.do": [{"respCode": "00", "queryId": "Q202601051100000009"}],
        },
    )
    result = channel.refund(
        out_trade_no=ORDER, refund_no="RF20260105000001", amount=Decimal("23.45"), reason="overpaid"
    )
    assert result.succeeded
    assert result.channel_refund_no == "Q202601051100000009"
    sent = gateway.calls[1][1]
    assert (sent["txnType"], sent["orderId"], sent["txnAmt"]) == ("04", "RF20260105000001", "2345")
    assert sent["origQryId"] == "Q202601051000000001"


def test_refund_declined_by_unionpay(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    scripted(
        gateway,
        {"queryTrans.do": [{"origRespCode": "00"}], "backTransReq.do": [{"respCode": "36"}]},
    )
    result = channel.refund(
        out_trade_no=ORDER, refund_no="RF20260105000001", amount=Decimal("1.00"), reason=""
    )
    assert (result.succeeded, result.failure_code) == (False, "36")


def test_refund_of_an_unpaid_order_is_declined(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway, origRespCode="64")
    with pytest.raises(ChannelDeclined):
        channel.refund(out_trade_no=ORDER, refund_no="RF1", amount=Decimal("1.00"), reason="")
    assert gateway.paths() == ["queryTrans.do"]


def test_refund_timeout_is_outcome_unknown(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    def respond(path: str, request: dict[str, str]) -> Reply:
        if path.endswith("queryTrans.do"):
            return gateway.answer(request, origRespCode="00")
        return Reply(gateway.answer(request).fields, delay=3)

    gateway.responder = respond
    with pytest.raises(ChannelOutcomeUnknown):
        channel.refund(out_trade_no=ORDER, refund_no="RF1", amount=Decimal("1.00"), reason="")


# --- Settlement file ---------------------------------------------------------------------


SETTLEMENT = (
    f"{ORDER}|Q202601051000000001|11|12345|0105\n"
    "\n"
    "AX20260104FFFFFFFFFFFFFFFFFFFF|Q202601041000000002|04|2345|0105\n"
)


def test_settlement_file_over_http(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    content = base64.b64encode(SETTLEMENT.encode()).decode()
    respond_with(gateway, fileContent=content, fileName="INN26010588ZM_777290058110048")
    records = channel.fetch_settlement_file(date(2026, 1, 5))
    [(path, sent)] = gateway.calls
    assert path.endswith("/gateway/api/fileTransfer.do")
    assert (sent["settleDate"], sent["fileType"]) == ("0105", "00")
    assert [(r.out_trade_no, r.kind, r.amount) for r in records] == [
        (ORDER, "payment", Decimal("123.45")),
        ("AX20260104FFFFFFFFFFFFFFFFFFFF", "refund", Decimal("23.45")),
    ]
    assert records[0].channel_trade_no == "Q202601051000000001"
    assert records[1].settled_on == date(2026, 1, 5)


def test_settlement_date_across_new_year() -> None:
    [record] = parse_settlement_file("A1234567|Q1|11|100|1231", date(2026, 1, 2))
    assert record.settled_on == date(2025, 12, 31)


@pytest.mark.parametrize(
    "line",
    [
        "A1234567|Q1|11|100",  # a field missing
        "A1234567|Q1|11|1.00|0105",  # amount not in fen
        "A1234567|Q1|31|100|0105",  # a cancel: not silently skipped
        "A1234567|Q1|11|100|1340",  # no such date
        "|Q1|11|100|0105",  # no order number
    ],
)
def test_malformed_settlement_line_is_named(line: str) -> None:
    text = f"{ORDER}|Q202601051000000001|11|12345|0105\n{line}\n"
    with pytest.raises(ChannelError) as caught:
        parse_settlement_file(text, date(2026, 1, 5))
    assert caught.value.code == "settlement_file_malformed"
    assert "line 2" in caught.value.message
    assert line in caught.value.message


def test_settlement_file_not_base64(channel: UnionPayChannel, gateway: FakeGateway) -> None:
    respond_with(gateway, fileContent="not base64!")
    with pytest.raises(ChannelError) as caught:
        channel.fetch_settlement_file(date(2026, 1, 5))
    assert caught.value.code == "settlement_file_malformed"


def test_settlement_file_not_ready_is_unavailable(
    channel: UnionPayChannel, gateway: FakeGateway
) -> None:
    respond_with(gateway, respCode="98", respMsg="文件不存在")
    with pytest.raises(ChannelUnavailable):
        channel.fetch_settlement_file(date(2026, 1, 5))
