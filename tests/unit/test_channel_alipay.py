"""The Alipay adapter against an independent signer and a local fake gateway.

Signatures in these tests are made and checked with ``cryptography`` and a
canonicalisation written here, not with the module's own ``sign_content``, so a
shared mistake cannot make both sides agree.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from repayments.channels.alipay import (
    AlipayChannel,
    AlipayConfig,
    parse_settlement_csv,
    parse_settlement_file,
    sign_content,
)
from repayments.channels.base import (
    CallbackRejected,
    CallbackUnparseable,
    ChannelDeclined,
    ChannelError,
    ChannelOutcomeUnknown,
    ChannelUnavailable,
    InboundCallback,
    OrderRequest,
    SettlementRecord,
)
from repayments.channels.crypto import generate_key_pair
from repayments.domain.states import AttemptStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=SHANGHAI)
TIMEOUT = 0.5


# --- keys and an independent signer ---------------------------------------------


@dataclass(frozen=True)
class Keys:
    merchant_private: Path
    merchant_public: Path
    alipay_private: Path
    alipay_public: Path
    stranger_private: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("alipay-keys")
    for name in ("merchant", "alipay", "stranger"):
        generate_key_pair(folder / f"{name}_private.pem", folder / f"{name}_public.pem")
    return Keys(
        merchant_private=folder / "merchant_private.pem",
        merchant_public=folder / "merchant_public.pem",
        alipay_private=folder / "alipay_private.pem",
        alipay_public=folder / "alipay_public.pem",
        stranger_private=folder / "stranger_private.pem",
    )


def canonical(params: dict[str, str], *, drop: tuple[str, ...]) -> bytes:
    """Alipay's string to sign, written independently of the module under test."""
    kept = [(key, value) for key, value in params.items() if key not in drop and value != ""]
    kept.sort(key=lambda pair: pair[0])
    return "&".join(key + "=" + value for key, value in kept).encode("utf-8")


def sign_with(private_path: Path, message: bytes) -> str:
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def verifies(public_path: Path, message: bytes, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_path.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- a fake Alipay gateway on 127.0.0.1 ----------------------------------------------


@dataclass
class Scripted:
    """How the fake gateway answers one method."""

    business: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    bad_signature: bool = False
    status: int = 200
    drop: bool = False


class FakeAlipay:
    """Plays the gateway: checks the merchant's signature, answers signed JSON."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.answers: dict[str, Scripted] = {}
        self.files: dict[str, bytes] = {}
        self.received: list[dict[str, str]] = []
        self.release = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.gateway_url = f"{self.base_url}/gateway.do"

    def answer(self, params: dict[str, str]) -> tuple[int, bytes]:
        method = params.get("method", "")
        key = method.replace(".", "_") + "_response"
        message = canonical(params, drop=("sign",))
        if not verifies(self.keys.merchant_public, message, params.get("sign", "")):
            script = Scripted(
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}
            )
            key = "error_response"
        else:
            script = self.answers[method]
        if script.delay:
            self.release.wait(script.delay)
        # Raw UTF-8, escaped slashes and odd spacing, which no re-serialisation
        # reproduces: the adapter must verify the text exactly as sent.
        text = "{ " + json.dumps(script.business, ensure_ascii=False)[1:].replace("/", "\\/")
        signer = self.keys.stranger_private if script.bad_signature else self.keys.alipay_private
        signature = sign_with(signer, text.encode("utf-8"))
        return script.status, f'{{"{key}": {text}, "sign": "{signature}"}}'.encode()


class _Server(ThreadingHTTPServer):
    fake: FakeAlipay

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out leave broken pipes behind; that is expected here."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        fake = self.server.fake
        fake.received.append(params)
        if fake.answers.get(params.get("method", ""), Scripted()).drop:
            self.close_connection = True
            return
        status, content = fake.answer(params)
        self._send(status, content, "application/json;charset=utf-8")

    def do_GET(self) -> None:
        content = self.server.fake.files.get(self.path)
        if content is None:
            self._send(404, b"", "text/plain")
        else:
            self._send(200, content, "application/octet-stream")

    def _send(self, status: int, content: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on what was received instead."""


@pytest.fixture
def fake(keys: Keys) -> Iterator[FakeAlipay]:
    gateway = FakeAlipay(keys)
    # A short poll interval keeps shutdown (and so each test) fast.
    thread = threading.Thread(
        target=gateway.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield gateway
    gateway.release.set()
    gateway.server.shutdown()
    gateway.server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def config(keys: Keys, fake: FakeAlipay) -> AlipayConfig:
    return AlipayConfig(
        app_id=APP_ID,
        seller_id=SELLER_ID,
        gateway_url=fake.gateway_url,
        app_private_key_path=str(keys.merchant_private),
        alipay_public_key_path=str(keys.alipay_public),
        timeout=TIMEOUT,
    )


@pytest.fixture
def channel(config: AlipayConfig) -> AlipayChannel:
    return AlipayChannel(config, clock=lambda: NOW)


def business(**fields: Any) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success", **fields}


def business_failed(sub_code: str, sub_msg: str = "业务失败") -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


# --- canonical string ---------------------------------------------------------------


def test_sign_content_sorts_and_drops_sign_sign_type_and_empty_values() -> None:
    params = {"b": "2", "a": "1", "sign": "x", "sign_type": "RSA2", "empty": "", "c": "中"}
    assert sign_content(params) == "a=1&b=2&c=中"
    assert sign_content(params, include_sign_type=True) == "a=1&b=2&c=中&sign_type=RSA2"
    assert sign_content(params).encode() == canonical(params, drop=("sign", "sign_type"))


# --- async notifications ---------------------------------------------------------


def notify_params(**overrides: str) -> dict[str, str]:
    params = {
        "notify_time": "2026-01-05 10:00:13",
        "notify_type": "trade_status_sync",
        "notify_id": "ac05099524730693a8b330c5ecf72da9786",
        "app_id": APP_ID,
        "auth_app_id": APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": "2026010522001400001234567890",
        "out_trade_no": "RP20260105000001",
        "buyer_id": "2088102177846875",
        "seller_id": SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "8606.64",
        "receipt_amount": "8606.64",
        "subject": "车贷第3期还款 & 利息",
        "body": "",
        "gmt_create": "2026-01-05 09:59:50",
        "gmt_payment": "2026-01-05 10:00:12",
        "fund_bill_list": '[{"amount":"8606.64","fundChannel":"ALIPAYACCOUNT"}]',
    }
    params.update(overrides)
    return params


def signed(params: dict[str, str], private_path: Path) -> dict[str, str]:
    message = canonical(params, drop=("sign", "sign_type"))
    return {**params, "sign": sign_with(private_path, message)}


def callback(params: dict[str, str]) -> InboundCallback:
    return InboundCallback(
        body=urlencode(params).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )


def test_independently_signed_notify_verifies_and_parses(
    channel: AlipayChannel, keys: Keys
) -> None:
    params = signed(notify_params(), keys.alipay_private)
    result = channel.parse_callback(callback(params), now=NOW)
    assert result.out_trade_no == "RP20260105000001"
    assert result.status == AttemptStatus.SUCCEEDED
    assert result.amount == Decimal("8606.64")
    assert result.channel_trade_no == "2026010522001400001234567890"
    assert result.accepted_at == datetime(2026, 1, 5, 10, 0, 12, tzinfo=SHANGHAI)
    assert result.funding == ""
    assert result.raw == params


def test_old_notify_is_still_accepted_because_alipay_resends_for_25_hours(
    channel: AlipayChannel, keys: Keys
) -> None:
    params = signed(notify_params(), keys.alipay_private)
    two_days_later = datetime(2026, 1, 7, 10, 0, tzinfo=SHANGHAI)
    assert channel.parse_callback(callback(params), now=two_days_later).amount == Decimal("8606.64")


def test_huabei_funding_is_detected(channel: AlipayChannel, keys: Keys) -> None:
    bills = json.dumps(
        [
            {"amount": "6.64", "fundChannel": "ALIPAYACCOUNT"},
            {"amount": "8600.00", "fundChannel": "PCREDIT"},
        ]
    )
    params = signed(notify_params(fund_bill_list=bills), keys.alipay_private)
    assert channel.parse_callback(callback(params), now=NOW).funding == "PCREDIT"


def test_html_escaped_fund_bill_list_is_understood(channel: AlipayChannel, keys: Keys) -> None:
    bills = "[{&quot;amount&quot;:&quot;8606.64&quot;,&quot;fundChannel&quot;:&quot;PCREDIT&quot;}]"
    params = signed(notify_params(fund_bill_list=bills), keys.alipay_private)
    assert channel.parse_callback(callback(params), now=NOW).funding == "PCREDIT"


def _tamper_after_signing(key: str, value: str) -> Callable[[Keys], dict[str, str]]:
    def build(keys: Keys) -> dict[str, str]:
        return {**signed(notify_params(), keys.alipay_private), key: value}

    return build


def _resigned(**overrides: str) -> Callable[[Keys], dict[str, str]]:
    return lambda keys: signed(notify_params(**overrides), keys.alipay_private)


def _signed_by_stranger(keys: Keys) -> dict[str, str]:
    return signed(notify_params(), keys.stranger_private)


def _without_sign(keys: Keys) -> dict[str, str]:
    params = signed(notify_params(), keys.alipay_private)
    del params["sign"]
    return params


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(_tamper_after_signing("total_amount", "0.01"), id="total_amount"),
        pytest.param(_tamper_after_signing("trade_status", "TRADE_CLOSED"), id="trade_status"),
        pytest.param(_tamper_after_signing("out_trade_no", "RP20260105000002"), id="out_trade_no"),
        pytest.param(_tamper_after_signing("gmt_payment", "2026-01-01 00:00:00"), id="gmt_payment"),
        pytest.param(_tamper_after_signing("body", "added"), id="empty_field_filled"),
        pytest.param(_resigned(app_id="2021999999999999"), id="foreign_app_id"),
        pytest.param(_resigned(seller_id="2088999999999999"), id="foreign_seller_id"),
        pytest.param(_signed_by_stranger, id="wrong_key"),
        pytest.param(_resigned(sign_type="RSA"), id="sign_type_rsa"),
        pytest.param(_resigned(sign_type="MD5"), id="sign_type_md5"),
        pytest.param(_tamper_after_signing("sign", "not base64!"), id="garbage_sign"),
        pytest.param(_without_sign, id="missing_sign"),
    ],
)
def test_tampered_or_foreign_notify_is_rejected(
    channel: AlipayChannel, keys: Keys, build: Callable[[Keys], dict[str, str]]
) -> None:
    with pytest.raises(CallbackRejected):
        channel.parse_callback(callback(build(keys)), now=NOW)


def test_repeated_parameter_is_rejected(channel: AlipayChannel, keys: Keys) -> None:
    params = signed(notify_params(), keys.alipay_private)
    body = urlencode(params).encode() + b"&total_amount=0.01"
    with pytest.raises(CallbackRejected, match="repeated"):
        channel.parse_callback(InboundCallback(body=body, headers={}), now=NOW)


def test_non_utf8_body_is_rejected(channel: AlipayChannel) -> None:
    with pytest.raises(CallbackRejected):
        channel.parse_callback(InboundCallback(body=b"subject=%B3%B5", headers={}), now=NOW)


def _renamed(params: dict[str, str], old: str, new: str) -> dict[str, str]:
    renamed = dict(params)
    renamed[new] = renamed.pop(old)
    return renamed


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(_renamed(notify_params(), "out_trade_no", "outTradeNo"), id="renamed"),
        pytest.param(_renamed(notify_params(), "total_amount", "totalAmount"), id="renamed_amt"),
        pytest.param(notify_params(trade_status="TRADE_PAID"), id="unknown_status"),
        pytest.param(notify_params(total_amount="86.066"), id="three_decimals"),
        pytest.param(notify_params(total_amount="8,606.64"), id="malformed_amount"),
        pytest.param(notify_params(gmt_payment="2026/01/05 10:00"), id="malformed_time"),
        pytest.param(notify_params(fund_bill_list="PCREDIT"), id="malformed_fund_bills"),
    ],
)
def test_verified_but_not_understood_notify_is_unparseable(
    channel: AlipayChannel, keys: Keys, params: dict[str, str]
) -> None:
    with pytest.raises(CallbackUnparseable):
        channel.parse_callback(callback(signed(params, keys.alipay_private)), now=NOW)


def test_callback_ack_is_the_literal_success(channel: AlipayChannel) -> None:
    ack = channel.callback_ack()
    assert (ack.status, ack.body, ack.content_type) == (200, b"success", "text/plain")


# --- checkout URL -------------------------------------------------------------


def test_create_order_returns_a_signed_redirect_without_calling_alipay(
    channel: AlipayChannel, keys: Keys, fake: FakeAlipay
) -> None:
    request = OrderRequest(
        out_trade_no="RP20260105000001",
        amount=Decimal("8606.64"),
        subject="车贷第3期还款",
        notify_url="https://portal.example/callbacks/alipay",
        method_type="alipay_wap",
        return_url="https://portal.example/pay/done",
        expires_at=datetime(2026, 1, 5, 2, 30, tzinfo=UTC),
    )
    created = channel.create_order(request)

    assert fake.received == []
    assert created.result.status == AttemptStatus.PENDING
    assert created.result.amount == Decimal("8606.64")
    assert created.next_action.kind == "redirect"
    url = urlsplit(created.next_action.value)
    assert f"{url.scheme}://{url.netloc}{url.path}" == fake.gateway_url
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert verifies(keys.merchant_public, canonical(params, drop=("sign",)), params["sign"])
    assert params["method"] == "alipay.trade.wap.pay"
    assert params["app_id"] == APP_ID
    assert params["timestamp"] == "2026-01-05 10:00:00"
    assert params["notify_url"] == "https://portal.example/callbacks/alipay"
    biz = json.loads(params["biz_content"])
    assert biz["total_amount"] == "8606.64"
    assert biz["product_code"] == "QUICK_WAP_WAY"
    assert biz["time_expire"] == "2026-01-05 10:30:00"
    assert biz["subject"] == "车贷第3期还款"


def test_amount_is_always_sent_with_two_decimals(channel: AlipayChannel) -> None:
    request = OrderRequest(
        out_trade_no="RP1", amount=Decimal("100"), subject="s", notify_url="", method_type="wap"
    )
    params = dict(parse_qsl(urlsplit(channel.create_order(request).next_action.value).query))
    assert json.loads(params["biz_content"])["total_amount"] == "100.00"


# --- server calls against the fake gateway --------------------------------------------


@pytest.mark.parametrize(
    ("trade_status", "expected"),
    [
        ("WAIT_BUYER_PAY", AttemptStatus.PENDING),
        ("TRADE_SUCCESS", AttemptStatus.SUCCEEDED),
        ("TRADE_FINISHED", AttemptStatus.SUCCEEDED),
        ("TRADE_CLOSED", AttemptStatus.CLOSED),
    ],
)
def test_query_maps_trade_status(
    channel: AlipayChannel, fake: FakeAlipay, trade_status: str, expected: AttemptStatus
) -> None:
    fake.answers["alipay.trade.query"] = Scripted(
        business(
            trade_no="2026010522001400001234567890",
            out_trade_no="RP20260105000001",
            trade_status=trade_status,
            total_amount="8606.64",
            send_pay_date="2026-01-05 10:00:12",
            fund_bill_list=[{"amount": "8606.64", "fund_channel": "ALIPAYACCOUNT"}],
        )
    )
    result = channel.query("RP20260105000001")
    assert result.status == expected
    assert result.amount == Decimal("8606.64")
    assert result.channel_trade_no == "2026010522001400001234567890"
    assert result.accepted_at == datetime(2026, 1, 5, 10, 0, 12, tzinfo=SHANGHAI)
    sent = fake.received[-1]
    assert sent["method"] == "alipay.trade.query"
    assert (sent["format"], sent["charset"], sent["sign_type"], sent["version"]) == (
        "JSON",
        "utf-8",
        "RSA2",
        "1.0",
    )
    assert sent["timestamp"] == "2026-01-05 10:00:00"
    assert json.loads(sent["biz_content"]) == {"out_trade_no": "RP20260105000001"}


def test_query_detects_huabei_from_fund_bill_list(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.answers["alipay.trade.query"] = Scripted(
        business(
            out_trade_no="RP1",
            trade_status="TRADE_SUCCESS",
            total_amount="10.00",
            fund_bill_list=[{"amount": "10.00", "fund_channel": "PCREDIT"}],
        )
    )
    assert channel.query("RP1").funding == "PCREDIT"


def test_query_of_a_trade_never_opened_is_pending_with_the_sub_code(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.query"] = Scripted(
        business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
    )
    result = channel.query("RP1")
    assert result.status == AttemptStatus.PENDING
    assert result.failure_code == "ACQ.TRADE_NOT_EXIST"
    assert result.failure_message == "交易不存在"


def test_query_with_unknown_trade_status_is_unavailable(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.query"] = Scripted(
        business(out_trade_no="RP1", trade_status="TRADE_PAID", total_amount="1.00")
    )
    with pytest.raises(ChannelUnavailable, match="unparseable_response"):
        channel.query("RP1")


def test_close_succeeds_and_tolerates_a_trade_never_opened(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.close"] = Scripted(business(out_trade_no="RP1"))
    channel.close("RP1")
    fake.answers["alipay.trade.close"] = Scripted(business_failed("ACQ.TRADE_NOT_EXIST"))
    channel.close("RP1")
    assert [json.loads(sent["biz_content"]) for sent in fake.received] == [
        {"out_trade_no": "RP1"}
    ] * 2


def test_close_of_a_paid_trade_is_declined(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.answers["alipay.trade.close"] = Scripted(
        business_failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    )
    with pytest.raises(ChannelDeclined) as caught:
        channel.close("RP1")
    assert caught.value.code == "already_paid"


def test_refund_succeeds(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.answers["alipay.trade.refund"] = Scripted(
        business(trade_no="2026010522001400001234567890", fund_change="Y", refund_fee="100.00")
    )
    result = channel.refund(
        out_trade_no="RP1", refund_no="RF1", amount=Decimal("100"), reason="多付退回"
    )
    assert result.succeeded
    assert result.refund_no == "RF1"
    assert result.channel_refund_no == "2026010522001400001234567890"
    biz = json.loads(fake.received[-1]["biz_content"])
    assert biz["out_request_no"] == "RF1"
    assert biz["refund_amount"] == "100.00"


def test_refund_business_failure_is_reported_not_raised(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.refund"] = Scripted(business_failed("ACQ.SELLER_BALANCE_NOT_ENOUGH"))
    result = channel.refund(out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason="")
    assert not result.succeeded
    assert result.failure_code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"


def test_refund_timing_out_after_sending_is_outcome_unknown(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.refund"] = Scripted(business(fund_change="Y"), delay=5)
    started = time.monotonic()
    with pytest.raises(ChannelOutcomeUnknown):
        channel.refund(out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason="")
    assert time.monotonic() - started < 3
    assert fake.received[-1]["method"] == "alipay.trade.refund"


def test_refund_connection_dropped_after_sending_is_outcome_unknown(
    channel: AlipayChannel, fake: FakeAlipay
) -> None:
    fake.answers["alipay.trade.refund"] = Scripted(drop=True)
    with pytest.raises(ChannelOutcomeUnknown):
        channel.refund(out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason="")


def test_query_timing_out_is_only_unavailable(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.answers["alipay.trade.query"] = Scripted(business(), delay=5)
    with pytest.raises(ChannelUnavailable, match="no_answer"):
        channel.query("RP1")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A bound but not listening port: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_connection_refused_is_unavailable_even_for_refund(
    config: AlipayConfig, closed_port: int
) -> None:
    channel = AlipayChannel(replace(config, gateway_url=f"http://127.0.0.1:{closed_port}/gw"))
    with pytest.raises(ChannelUnavailable, match="unreachable"):
        channel.query("RP1")
    with pytest.raises(ChannelUnavailable, match="unreachable"):
        channel.refund(out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason="")


@pytest.mark.parametrize(
    ("method", "call", "error"),
    [
        ("alipay.trade.query", lambda channel: channel.query("RP1"), ChannelUnavailable),
        ("alipay.trade.close", lambda channel: channel.close("RP1"), ChannelUnavailable),
        (
            "alipay.trade.refund",
            lambda channel: channel.refund(
                out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason=""
            ),
            ChannelOutcomeUnknown,
        ),
    ],
)
def test_answer_with_a_bad_signature_is_not_trusted(
    channel: AlipayChannel,
    fake: FakeAlipay,
    method: str,
    call: Callable[[AlipayChannel], object],
    error: type[ChannelError],
) -> None:
    fake.answers[method] = Scripted(
        business(out_trade_no="RP1", trade_status="TRADE_SUCCESS", total_amount="1.00"),
        bad_signature=True,
    )
    with pytest.raises(error) as caught:
        call(channel)
    assert type(caught.value) is error
    assert caught.value.code == "bad_response_signature"


@pytest.mark.parametrize(
    ("script", "code"),
    [
        pytest.param(
            Scripted({"code": "20000", "msg": "Service Currently Unavailable"}), "20000", id="20000"
        ),
        pytest.param(Scripted(business(), status=502), "http_status", id="http_502"),
    ],
)
def test_service_unavailable_is_unknown_only_for_refund(
    channel: AlipayChannel, fake: FakeAlipay, script: Scripted, code: str
) -> None:
    fake.answers["alipay.trade.query"] = script
    fake.answers["alipay.trade.refund"] = script
    with pytest.raises(ChannelUnavailable) as unavailable:
        channel.query("RP1")
    with pytest.raises(ChannelOutcomeUnknown) as unknown:
        channel.refund(out_trade_no="RP1", refund_no="RF1", amount=Decimal("1"), reason="")
    assert unavailable.value.code == unknown.value.code == code


def test_request_signed_with_the_wrong_key_is_refused_by_the_gateway(
    config: AlipayConfig, keys: Keys, fake: FakeAlipay
) -> None:
    channel = AlipayChannel(replace(config, app_private_key_path=str(keys.stranger_private)))
    fake.answers["alipay.trade.query"] = Scripted(business())
    with pytest.raises(ChannelUnavailable) as caught:
        channel.query("RP1")
    assert caught.value.code == "40002"


def test_keys_are_loaded_lazily(config: AlipayConfig) -> None:
    channel = AlipayChannel(replace(config, app_private_key_path="/nonexistent/key.pem"))
    assert channel.callback_ack().body == b"success"
    with pytest.raises(FileNotFoundError):
        channel.query("RP1")


def test_config_from_settings(settings: Any) -> None:
    settings.ALIPAY_APP_ID = "2021000000000042"
    settings.ALIPAY_GATEWAY_URL = "https://openapi.alipay.com/gateway.do"
    settings.CHANNEL_TIMEOUT_SECONDS = 7
    config = AlipayConfig.from_settings()
    assert config.app_id == "2021000000000042"
    assert config.gateway_url == "https://openapi.alipay.com/gateway.do"
    assert config.timeout == 7.0
    assert config.seller_id == settings.ALIPAY_SELLER_ID


# --- settlement files -----------------------------------------------------------

# Alipay writes this title with full-width parentheses.
AMOUNT_TITLE = "订单金额\uff08元\uff09"
BILL = "\n".join(
    [
        "#支付宝业务明细查询",
        "#账号:[20880000000000010156]",
        "#-----------------------业务明细列表-----------------------",
        f"支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,{AMOUNT_TITLE},商家实收,备注",
        "2026010422001400001234567890\t,RP202601040001\t,交易,车贷第3期还款,"
        "2026-01-04 09:58:01,2026-01-04 10:00:12,8606.64,8606.64,",
        '2026010322001400001234567891\t,RP202601030007\t,退款,"车贷,提前结清",'
        "2026-01-04 11:00:00,2026-01-04 11:00:05,-100.00,-100.00,",
        "#-----------------------业务明细列表结束-----------------------",
        "#交易合计:1笔 商家实收共8606.64元",
        "",
    ]
)

EXPECTED = [
    SettlementRecord(
        out_trade_no="RP202601040001",
        channel_trade_no="2026010422001400001234567890",
        amount=Decimal("8606.64"),
        kind="payment",
        settled_on=date(2026, 1, 4),
    ),
    SettlementRecord(
        out_trade_no="RP202601030007",
        channel_trade_no="2026010322001400001234567891",
        amount=Decimal("100.00"),
        kind="refund",
        settled_on=date(2026, 1, 4),
    ),
]


def test_settlement_csv_with_payment_and_refund_rows() -> None:
    assert parse_settlement_csv(BILL) == EXPECTED


def test_settlement_plain_header_from_the_brief() -> None:
    text = (
        "支付宝交易号,商户订单号,业务类型,订单金额(元),完成时间\n"
        "T1,O1,交易,1.50,2026-01-04 10:00:00"
    )
    assert parse_settlement_csv(text)[0].amount == Decimal("1.50")


@pytest.mark.parametrize(
    "bad_row",
    [
        "T9,RP9,交易,车贷,2026-01-04 09:00:00,2026-01-04 09:00:01,86.066,86.07,",
        "T9,RP9,交易,车贷,2026-01-04 09:00:00,not a time,1.00,1.00,",
        "T9,RP9,冻结,车贷,2026-01-04 09:00:00,2026-01-04 09:00:01,1.00,1.00,",
        "T9,RP9,交易",
        ",RP9,交易,车贷,2026-01-04 09:00:00,2026-01-04 09:00:01,1.00,1.00,",
    ],
)
def test_malformed_settlement_row_names_its_line(bad_row: str) -> None:
    lines = BILL.splitlines()
    lines.insert(5, bad_row)
    with pytest.raises(ChannelError) as caught:
        parse_settlement_csv("\n".join(lines))
    assert caught.value.code == "settlement_file_malformed"
    assert "line 6" in caught.value.message


def test_settlement_without_header_is_malformed() -> None:
    with pytest.raises(ChannelError, match="settlement_file_malformed"):
        parse_settlement_csv("#only comments\n")


def _bill_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("20880000000000010156_20260104_summary.csv", "#汇总\n".encode("gbk"))
        archive.writestr("20880000000000010156_20260104_detail.csv", BILL.encode("gbk"))
    return buffer.getvalue()


def test_settlement_file_as_alipay_ships_it_gbk_zip_and_gbk_csv() -> None:
    assert parse_settlement_file(_bill_zip()) == EXPECTED
    assert parse_settlement_file(BILL.encode("gbk")) == EXPECTED
    assert parse_settlement_file(BILL.encode("utf-8")) == EXPECTED


def test_fetch_settlement_file_downloads_the_bill(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.files["/bills/20260104.zip"] = _bill_zip()
    fake.answers["alipay.data.dataservice.bill.downloadurl.query"] = Scripted(
        business(bill_download_url=f"{fake.base_url}/bills/20260104.zip")
    )
    assert channel.fetch_settlement_file(date(2026, 1, 4)) == EXPECTED
    assert json.loads(fake.received[-1]["biz_content"]) == {
        "bill_type": "trade",
        "bill_date": "2026-01-04",
    }


def test_bill_not_ready_is_unavailable(channel: AlipayChannel, fake: FakeAlipay) -> None:
    fake.answers["alipay.data.dataservice.bill.downloadurl.query"] = Scripted(
        business_failed("isp.bill_not_exist", "账单不存在")
    )
    with pytest.raises(ChannelUnavailable, match=r"isp\.bill_not_exist"):
        channel.fetch_settlement_file(date(2026, 1, 4))
