"""Alibaba Cloud SMS (dysmsapi ``SendSms``) over its HTTP RPC API, and its delivery receipts.

Protocol summary (what this module relies on; checked against Alibaba Cloud's
"HTTP signature" and ``SmsReport`` pages and the worked example they publish,
see the test module):

* One GET to the endpoint with every parameter in the query: the common ones
  (``AccessKeyId``, ``Action=SendSms``, ``Format=JSON``, ``RegionId``,
  ``SignatureMethod=HMAC-SHA1``, ``SignatureNonce``, ``SignatureVersion=1.0``,
  ``Timestamp`` in UTC ``YYYY-MM-DDThh:mm:ssZ``, ``Version=2017-05-25``) and
  the business ones (``PhoneNumbers``, ``SignName``, ``TemplateCode``,
  ``TemplateParam`` as JSON, ``OutId`` = our notice id, echoed in receipts).
* Signature: parameters sorted by name, names and values percent-encoded per
  RFC 3986 (space is ``%20``, ``*`` is ``%2A``, ``~`` stays), joined with
  ``&``; string to sign ``GET&%2F&`` + that string percent-encoded again;
  base64 of HMAC-SHA1 keyed with ``AccessKeySecret + "&"``.
* The answer is JSON; ``{"Code": "OK", "BizId": ...}`` means *accepted*. Whether
  the phone got it comes later, as a delivery receipt ("SmsReport", HTTP batch
  push): a JSON array of ``{"phone_number", "send_time", "report_time",
  "success", "err_code", "err_msg", "sms_size", "biz_id", "out_id"}``, answered
  with ``{"code": 0, "msg": ...}`` (HTTP 200; anything else is pushed again).

Unverified against the live service (no account here): the HTTP status of
refusals such as ``SignatureDoesNotMatch`` (we read ``Code`` from any JSON
answer, whatever the status), the time zone of ``report_time`` (taken as
Beijing time, like every other Alibaba wall-clock time), and per-variable
length limits of ``TemplateParam`` (values are sent as strings, untruncated).

The gateway sends its approved template, not our rendered text: the template
registered for each notice kind must say what ``notifications.texts`` says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from notifications.providers.base import ProviderError, Recipient, Sent

NAME = "aliyun-sms"
API_VERSION = "2017-05-25"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
REPORT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CODE_OK = "OK"


def percent_encode(value: str) -> str:
    """RFC 3986: only ``A-Z a-z 0-9 - _ . ~`` stay; UTF-8 bytes become ``%XY``."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def signature(params: Mapping[str, str], secret: str, *, method: str = "GET") -> str:
    """The ``Signature`` of ``params`` (which must not contain it)."""
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_query(params: Mapping[str, str], secret: str) -> str:
    """The query string to send: the signature first, then the canonical parameters."""
    return f"Signature={percent_encode(signature(params, secret))}&{canonical_query(params)}"


@dataclass(frozen=True)
class AliyunSmsConfig:
    endpoint: str  # "https://dysmsapi.aliyuncs.com/" or the sandbox's /aliyun-sms/
    access_key_id: str
    access_key_secret: str = field(repr=False)
    sign_name: str
    region: str = "cn-hangzhou"
    # Notice kind -> approved template code (SMS_...).
    template_codes: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0


class AliyunSmsProvider:
    """``SendSms`` for one phone; delivery is confirmed later by a receipt."""

    name = NAME
    channel = "sms"

    def __init__(
        self,
        config: AliyunSmsConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config = config
        self._clock = clock
        self._nonce = nonce

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        """:raises ProviderError: refused (with Aliyun's ``Code``), unreachable or timed out."""
        del text  # Aliyun sends its approved template, filled with ``params``
        if not to.phone:
            raise ProviderError("no phone number")
        template = self.config.template_codes.get(kind)
        if not template:
            raise ProviderError(f"no SMS template configured for {kind or 'this notice'}")
        query = signed_query(
            self.request_params(to.phone, template, params or {}, reference),
            self.config.access_key_secret,
        )
        try:
            response = requests.get(f"{self.config.endpoint}?{query}", timeout=self.config.timeout)
        except requests.Timeout:
            raise ProviderError("aliyun-sms timed out") from None
        except requests.RequestException as exc:
            raise ProviderError(f"aliyun-sms unreachable: {type(exc).__name__}") from None
        return _sent_from(response)

    def request_params(
        self, phone: str, template: str, values: Mapping[str, Any], reference: str
    ) -> dict[str, str]:
        return {
            "AccessKeyId": self.config.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.config.region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "Timestamp": self._clock().astimezone(UTC).strftime(TIMESTAMP_FORMAT),
            "Version": API_VERSION,
            "PhoneNumbers": phone,
            "SignName": self.config.sign_name,
            "TemplateCode": template,
            # Template variables are strings on Aliyun's side.
            "TemplateParam": json.dumps(
                {k: str(v) for k, v in values.items()},
                ensure_ascii=False,
                separators=(",", ":"),
                sort_keys=True,
            ),
            "OutId": reference,
        }


def _sent_from(response: requests.Response) -> Sent:
    try:
        answer = response.json()
    except ValueError:
        raise ProviderError(f"aliyun-sms HTTP {response.status_code}") from None
    if not isinstance(answer, dict):
        raise ProviderError(f"aliyun-sms HTTP {response.status_code}: unexpected answer")
    code = str(answer.get("Code") or f"HTTP {response.status_code}")
    if code != CODE_OK or not answer.get("BizId"):
        raise ProviderError(f"aliyun-sms {code}: {answer.get('Message', '')}"[:200])
    return Sent(message_id=str(answer["BizId"]), delivered=False)


# --- Delivery receipts ("SmsReport", HTTP batch push) ------------------------


class ReceiptUnparseable(ValueError):
    """The body is not a JSON array of reports."""


@dataclass(frozen=True)
class SmsReceipt:
    message_id: str  # BizId
    out_id: str  # our notice id, as sent in OutId
    delivered: bool
    error: str  # "err_code err_msg" when not delivered
    reported_at: datetime | None


def parse_receipts(body: bytes) -> list[SmsReceipt]:
    """Reports in the order sent; entries without a ``biz_id`` are left out.

    :raises ReceiptUnparseable: the body is not a JSON array.
    """
    try:
        reports = json.loads(body)
    except ValueError:
        raise ReceiptUnparseable("body is not JSON") from None
    if not isinstance(reports, list):
        raise ReceiptUnparseable("body is not a JSON array")
    return [_receipt(r) for r in reports if isinstance(r, dict) and r.get("biz_id")]


def _receipt(report: Mapping[str, Any]) -> SmsReceipt:
    # ``success`` is a JSON boolean; anything else is read as "not delivered".
    delivered = report.get("success") is True
    error = "" if delivered else f"{report.get('err_code', '')} {report.get('err_msg', '')}"
    return SmsReceipt(
        message_id=str(report["biz_id"]),
        out_id=str(report.get("out_id", "")),
        delivered=delivered,
        error=error.strip()[:200],
        reported_at=_report_time(report.get("report_time")),
    )


def _report_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), REPORT_TIME_FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        return None
