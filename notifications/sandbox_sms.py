"""A stand-in for Alibaba Cloud SMS: ``SendSms`` with signature checks, and delivery receipts.

It runs inside the channel sandbox process under ``/aliyun-sms/`` (registered
by ``repayments.channels.sandbox.build``), speaks the protocol described in
``notifications.providers.aliyun_sms``, keeps what it received in memory and
pushes delivery receipts to our receipt URL as Aliyun does (a JSON array of
reports; acknowledged by HTTP 200 with a numeric ``code``, else pushed again).

Control (sandbox only, unsigned):

* ``POST /aliyun-sms/sandbox/faults`` with a JSON object of :class:`SmsFaults`
  fields: ``fail_rate`` (answer ``fail_code`` instead of OK),
  ``undelivered_rate`` (receipt with ``success=false``), ``drop_receipt_rate``,
  ``receipt_delay_ms``, ``seed``.
* ``GET /aliyun-sms/sandbox/messages``: what the "phones" received.
* ``POST /aliyun-sms/sandbox/reset``: forget messages and faults.
* The sandbox's generic ``/control/aliyun-sms/faults`` applies too, for
  ``down`` and ``latency_ms`` only (handled before this gateway is called).

Error codes beyond ``OK``, ``SignatureDoesNotMatch`` and the ``isv.*`` business
codes are the sandbox's best approximation, not checked against the service.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import requests

from notifications.providers.aliyun_sms import (
    API_VERSION,
    CODE_OK,
    NAME,
    REPORT_TIME_FORMAT,
    TIMESTAMP_FORMAT,
    signature,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PREFIX = f"/{NAME}"
RECEIPT_PATH = "/notifications/receipts/aliyun/"
MAX_CLOCK_SKEW = timedelta(minutes=15)
# Aliyun pushes again after 1, 5 and 10 minutes; the sandbox keeps it short.
RECEIPT_RETRY_DELAYS = (1.0, 2.0, 4.0)
MAINLAND_MOBILE = re.compile(r"1\d{10}")
FIXED_PARAMS = {
    "Action": "SendSms",
    "Format": "JSON",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "Version": API_VERSION,
}

R = TypeVar("R")


class GatewayRequest(Protocol):
    """What the gateway reads from an HTTP request (the sandbox's request fits)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def raw_query(self) -> str: ...
    @property
    def body(self) -> bytes: ...


@dataclass
class SmsFaults:
    fail_rate: float = 0.0  # share of SendSms answered with fail_code
    fail_code: str = "isv.BUSINESS_LIMIT_CONTROL"
    undelivered_rate: float = 0.0  # share whose receipt says the phone never got it
    undelivered_code: str = "UNDELIV"
    drop_receipt_rate: float = 0.0  # share of receipts never pushed
    receipt_delay_ms: int = 0
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)  # noqa: S311 - simulation, not security

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.random.random() < rate

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sms_faults_from(data: dict[str, Any], current: SmsFaults) -> SmsFaults:
    """Merge ``data`` into ``current``; unknown keys or wrong types raise ValueError."""
    merged = current.public()
    for key, value in data.items():
        if key not in merged:
            raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(merged))}")
        expected = type(merged[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"fault {key!r} must be {expected.__name__}")
        merged[key] = value
    return SmsFaults(**merged)


@dataclass(frozen=True)
class ReceivedSms:
    biz_id: str
    phone_numbers: str
    sign_name: str
    template_code: str
    template_param: dict[str, Any]
    out_id: str
    received_at: datetime


@dataclass
class _Answer:
    status: int
    data: dict[str, Any] = field(default_factory=dict)


class SandboxSmsGateway(Generic[R]):
    """The server side of ``SendSms``; ``respond(status, body, headers)`` builds answers
    in the host server's type, so this module needs nothing from the payment sandbox."""

    name = NAME

    def __init__(
        self,
        *,
        respond: Callable[[int, bytes, dict[str, str]], R],
        access_key_id: str,
        access_key_secret: str,
        receipt_url: str,
    ) -> None:
        self.respond = respond
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.receipt_url = receipt_url
        self.faults = SmsFaults()
        self.messages: list[ReceivedSms] = []
        self.receipts = {"sent": 0, "acknowledged": 0}
        self._nonces: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, request: GatewayRequest) -> R:
        sub = request.path.removeprefix(PREFIX).strip("/")
        if sub.startswith("sandbox/"):
            answer = self._control(request.method, sub.removeprefix("sandbox/"), request.body)
        elif sub:
            answer = _Answer(404, {"Code": "InvalidAction.NotFound", "Message": "no such path"})
        else:
            text = request.raw_query if request.method == "GET" else request.body.decode()
            answer = self._send_sms(request.method, text)
        body = json.dumps(answer.data, ensure_ascii=False, default=str).encode()
        return self.respond(answer.status, body, {"Content-Type": "application/json;charset=utf-8"})

    # The sandbox's channel interface also asks these; this gateway has no payment orders.
    def notification(self, order: object) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError("the SMS gateway sends its own receipts")

    def acknowledged(self, status: int, body: bytes) -> bool:
        return _acknowledged(status, body)

    # --- SendSms ----------------------------------------------------------------

    def _send_sms(self, method: str, text: str) -> _Answer:
        pairs = parse_qsl(text, keep_blank_values=True)
        params = dict(pairs)
        given = params.pop("Signature", "")
        duplicated = len({name for name, _ in pairs}) < len(pairs)
        refusal = self._refusal(method, params, given, duplicated=duplicated)
        if refusal is not None:
            return refusal
        with self._lock:
            if self.faults.chance(self.faults.fail_rate):
                return _error(200, self.faults.fail_code, "sandbox fault: fail_rate")
            sms = ReceivedSms(
                biz_id=f"{uuid.uuid4().int % 10**18:018d}^0",
                phone_numbers=params["PhoneNumbers"],
                sign_name=params["SignName"],
                template_code=params["TemplateCode"],
                template_param=json.loads(params.get("TemplateParam") or "{}"),
                out_id=params.get("OutId", ""),
                received_at=datetime.now(UTC),
            )
            self.messages.append(sms)
            delivered = not self.faults.chance(self.faults.undelivered_rate)
            dropped = self.faults.chance(self.faults.drop_receipt_rate)
            delay = self.faults.receipt_delay_ms / 1000
        if not dropped:
            self._push_receipt(self._report(sms, delivered), delay)
        return _Answer(
            200,
            {"RequestId": str(uuid.uuid4()), "Code": CODE_OK, "Message": "OK", "BizId": sms.biz_id},
        )

    def _refusal(
        self, method: str, params: dict[str, str], given: str, *, duplicated: bool
    ) -> _Answer | None:
        """Aliyun's checks, in its order: who, signature, request shape, then business."""
        if params.get("AccessKeyId") != self.access_key_id:
            return _error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        expected = signature(params, self.access_key_secret, method=method)
        if duplicated or not hmac.compare_digest(given.encode(), expected.encode()):
            return _error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        for key, value in FIXED_PARAMS.items():
            if params.get(key) != value:
                return _error(400, "InvalidParameter", f"{key} must be {value}")
        stale = self._stale_or_replayed(
            params.get("Timestamp", ""), params.get("SignatureNonce", "")
        )
        if stale is not None:
            return stale
        return self._business_refusal(params)

    def _stale_or_replayed(self, timestamp: str, nonce: str) -> _Answer | None:
        try:
            sent = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return _error(400, "InvalidTimeStamp.Format", "Timestamp is not UTC ISO 8601.")
        if abs(datetime.now(UTC) - sent) > MAX_CLOCK_SKEW:
            return _error(400, "InvalidTimeStamp.Expired", "Timestamp is too far from now.")
        with self._lock:
            if not nonce or nonce in self._nonces:
                return _error(400, "SignatureNonceUsed", "SignatureNonce was used before.")
            self._nonces.add(nonce)
        return None

    def _business_refusal(self, params: dict[str, str]) -> _Answer | None:
        if not MAINLAND_MOBILE.fullmatch(params.get("PhoneNumbers", "")):
            return _error(200, "isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
        if not params.get("SignName"):
            return _error(200, "isv.SMS_SIGNATURE_ILLEGAL", "missing or unapproved SignName")
        if not params.get("TemplateCode", "").startswith("SMS_"):
            return _error(200, "isv.SMS_TEMPLATE_ILLEGAL", "missing or unapproved TemplateCode")
        try:
            values = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            values = None
        if not isinstance(values, dict):
            return _error(200, "isv.INVALID_JSON_PARAM", "TemplateParam is not a JSON object")
        return None

    # --- Receipts ---------------------------------------------------------------

    def _report(self, sms: ReceivedSms, delivered: bool) -> dict[str, Any]:
        now = datetime.now(SHANGHAI)
        return {
            "phone_number": sms.phone_numbers,
            "send_time": sms.received_at.astimezone(SHANGHAI).strftime(REPORT_TIME_FORMAT),
            "report_time": now.strftime(REPORT_TIME_FORMAT),
            "success": delivered,
            "err_code": "DELIVERED" if delivered else self.faults.undelivered_code,
            "err_msg": "用户接收成功" if delivered else "用户接收失败 [sandbox]",
            "sms_size": "1",
            "biz_id": sms.biz_id,
            "out_id": sms.out_id,
        }

    def _push_receipt(self, report: dict[str, Any], delay: float) -> None:
        def run() -> None:
            time.sleep(delay)
            for wait in (0.0, *RECEIPT_RETRY_DELAYS):
                time.sleep(wait)
                with self._lock:
                    self.receipts["sent"] += 1
                try:
                    response = requests.post(self.receipt_url, json=[report], timeout=10)
                except requests.RequestException:
                    continue
                if _acknowledged(response.status_code, response.content):
                    with self._lock:
                        self.receipts["acknowledged"] += 1
                    return

        threading.Thread(target=run, name="sandbox-sms-receipt", daemon=True).start()

    # --- Control ----------------------------------------------------------------

    def _control(self, method: str, action: str, body: bytes) -> _Answer:
        if method == "GET" and action == "messages":
            with self._lock:
                return _Answer(200, {"messages": [asdict(m) for m in self.messages]})
        if method == "POST" and action == "reset":
            with self._lock:
                self.messages.clear()
                self.faults = SmsFaults()
            return _Answer(200, {"reset": True})
        if method == "POST" and action == "faults":
            try:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("send a JSON object of faults")
                with self._lock:
                    self.faults = sms_faults_from(data, self.faults)
                    return _Answer(200, self.faults.public())
            except ValueError as exc:
                return _Answer(400, {"error": str(exc)})
        return _Answer(404, {"error": "unknown sandbox path"})


def _error(status: int, code: str, message: str) -> _Answer:
    return _Answer(
        status,
        {
            "RequestId": str(uuid.uuid4()),
            "Code": code,
            "Message": message,
            "HostId": "dysmsapi.aliyuncs.com",
        },
    )


def _acknowledged(status: int, body: bytes) -> bool:
    """Aliyun checks only that the answer is HTTP 200 with a numeric ``code``."""
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    code = answer.get("code") if isinstance(answer, dict) else None
    return status == 200 and isinstance(code, int) and not isinstance(code, bool)
