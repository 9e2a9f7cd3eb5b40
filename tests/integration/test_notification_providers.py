"""Real notice providers: Aliyun SMS against the sandbox gateway over HTTP, its delivery
receipts through the portal's endpoint, and FCM against a local stand-in for Google."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings as django_settings
from django.urls import path

from notifications.models import (
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
)
from notifications.providers.aliyun_sms import percent_encode, signature, signed_query
from notifications.providers.base import ProviderError, Recipient, Sent
from notifications.providers.fcm import AccessTokens, FcmConfig, FcmProvider, load_service_account
from notifications.providers.registry import aliyun_sms_from_settings, provider_from_settings
from notifications.sandbox_sms import SandboxSmsGateway, SmsFaults
from notifications.services import notice_dispatch, notices_claim
from portal import urls as portal_urls
from portal.views import receipts as receipt_views
from repayments.domain.states import AttemptStatus
from tests.conftest import at
from tests.integration.conftest import CallbackReceiver, RunningSandbox
from tests.integration.helpers import open_attempt, report

RECEIPTS_URL = "/notifications/receipts/aliyun/"
# The project's routes first: once portal/urls.py routes receipts itself, that route wins.
urlpatterns = [*portal_urls.urlpatterns, path(RECEIPTS_URL[1:], receipt_views.aliyun_sms_receipts)]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

T0 = at(date(2026, 2, 5), 10)
ACK = {"code": 0, "msg": "成功"}


# --- The signature, against Alibaba Cloud's published examples ------------------------

# The SendSms example of Alibaba Cloud's "HTTP protocol and signature" page.
SEND_SMS_EXAMPLE = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}
SEND_SMS_EXAMPLE_SIGNATURE = "zJDF+Lrzhj/ThnlvIToysFRq6t4="
# The DescribeRegions example of the generic RPC signature page.
RPC_EXAMPLE = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}
RPC_EXAMPLE_SIGNATURE = "OLeaidS1JvxuMvnyHOwuJ+uX5qY="

_UNRESERVED = set(string.ascii_letters + string.digits + "-_.~")


def _independent_signature(params: dict[str, str], secret: str) -> str:
    """The algorithm written out from the documentation, sharing no code with the adapter."""

    def encode(text: str) -> str:
        return "".join(
            ch if ch in _UNRESERVED else "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))
            for ch in text
        )

    canonical = "&".join(f"{encode(k)}={encode(params[k])}" for k in sorted(params))
    to_sign = "GET&" + encode("/") + "&" + encode(canonical)
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def test_the_signature_matches_alibaba_clouds_published_examples() -> None:
    assert _independent_signature(SEND_SMS_EXAMPLE, "testSecret") == SEND_SMS_EXAMPLE_SIGNATURE
    assert signature(SEND_SMS_EXAMPLE, "testSecret") == SEND_SMS_EXAMPLE_SIGNATURE
    assert signature(RPC_EXAMPLE, "testsecret") == RPC_EXAMPLE_SIGNATURE
    assert signature(SEND_SMS_EXAMPLE, "testsecret") != SEND_SMS_EXAMPLE_SIGNATURE


def test_percent_encoding_is_rfc_3986_with_the_tilde_left_alone() -> None:
    assert percent_encode("a b*~/+=&é") == "a%20b%2A~%2F%2B%3D%26%C3%A9"


# --- The adapter against the sandbox gateway over HTTP ---------------------------------


@pytest.fixture
def gateway(running_sandbox: RunningSandbox, settings: Any) -> SandboxSmsGateway[Any]:
    """The sandbox's SMS gateway, pushing receipts to the test's receiver."""
    sms_gateway = running_sandbox.sandbox.channels["aliyun-sms"]
    assert isinstance(sms_gateway, SandboxSmsGateway)
    sms_gateway.receipt_url = running_sandbox.receiver.url
    running_sandbox.receiver.answer = json.dumps(ACK).encode()
    settings.ALIYUN_SMS_ENDPOINT = f"{running_sandbox.url}/aliyun-sms/"
    settings.NOTIFY_SMS_PROVIDER = "aliyun"
    settings.NOTIFY_PROVIDER_TIMEOUT_SECONDS = 2
    return sms_gateway


def _send(provider: Any, **overrides: Any) -> Sent:
    fields: dict[str, Any] = {
        "to": Recipient(user_id=1, phone="13900000001"),
        "text": "rendered text, not sent by Aliyun",
        "reference": "42",
        "kind": NoticeKind.PAYMENT_FAILED,
        "params": {"amount": "¥2,967.99", "number": 3},
    }
    return provider.send(**{**fields, **overrides})


def test_the_adapter_sends_through_the_gateway_which_checks_the_signature(
    gateway: SandboxSmsGateway[Any], settings: Any
) -> None:
    sent = _send(aliyun_sms_from_settings())
    [message] = gateway.messages
    assert sent == Sent(message_id=message.biz_id, delivered=False)
    assert message.phone_numbers == "13900000001"
    assert message.sign_name == "安心还款"
    assert message.template_code == settings.ALIYUN_SMS_TEMPLATE_CODES["payment_failed"]
    assert message.template_param == {"amount": "¥2,967.99", "number": "3"}
    assert message.out_id == "42"


def test_the_gateway_refuses_a_tampered_replayed_or_wrongly_keyed_request(
    gateway: SandboxSmsGateway[Any], settings: Any
) -> None:
    endpoint = settings.ALIYUN_SMS_ENDPOINT
    params = aliyun_sms_from_settings().request_params(
        "13900000001", "SMS_SANDBOX_PAYMENT_FAILED", {}, "42"
    )
    query = signed_query(params, settings.ALIYUN_SMS_ACCESS_KEY_SECRET)
    tampered = query.replace("PhoneNumbers=13900000001", "PhoneNumbers=13900000002")
    assert tampered != query
    refused = requests.get(f"{endpoint}?{tampered}", timeout=5)
    assert (refused.status_code, refused.json()["Code"]) == (400, "SignatureDoesNotMatch")
    accepted = requests.get(f"{endpoint}?{query}", timeout=5)
    assert accepted.json()["Code"] == "OK"
    replayed = requests.get(f"{endpoint}?{query}", timeout=5)
    assert replayed.json()["Code"] == "SignatureNonceUsed"
    settings.ALIYUN_SMS_ACCESS_KEY_SECRET = "not-the-gateways-secret"
    with pytest.raises(ProviderError, match="SignatureDoesNotMatch"):
        _send(aliyun_sms_from_settings())
    assert [m.phone_numbers for m in gateway.messages] == ["13900000001"]


def test_refusals_outages_and_time_outs_become_provider_errors(
    gateway: SandboxSmsGateway[Any], running_sandbox: RunningSandbox, settings: Any
) -> None:
    provider = aliyun_sms_from_settings()
    faults = requests.post(
        f"{running_sandbox.url}/aliyun-sms/sandbox/faults", json={"fail_rate": 1}, timeout=5
    )
    assert faults.json()["fail_rate"] == 1.0
    with pytest.raises(ProviderError, match=r"isv\.BUSINESS_LIMIT_CONTROL"):
        _send(provider)
    gateway.faults = SmsFaults()
    with pytest.raises(ProviderError, match="no SMS template"):
        _send(provider, kind="not_a_kind")
    with pytest.raises(ProviderError, match="no phone number"):
        _send(provider, to=Recipient(user_id=1, phone=""))
    running_sandbox.control("aliyun-sms/faults", {"down": True})
    with pytest.raises(ProviderError, match="HTTP 503"):
        _send(provider)
    running_sandbox.control("aliyun-sms/faults", {"down": False, "latency_ms": 1500})
    settings.NOTIFY_PROVIDER_TIMEOUT_SECONDS = 1
    with pytest.raises(ProviderError, match="timed out"):
        _send(aliyun_sms_from_settings())
    assert gateway.messages == []


# --- Receipts through the portal's endpoint --------------------------------------------


def _succeeded_notice(make_loan: Any) -> Notice:
    payment, attempt = open_attempt(make_loan(), "2967.99", T0)
    report(attempt, AttemptStatus.SUCCEEDED, T0)
    return Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED)


def _dispatch_all(now: Any, providers: Any) -> list[str]:
    return [
        notice_dispatch(notice_id=notice_id, now=now, providers=providers).status
        for notice_id in notices_claim(now=now)
    ]


def _relay_receipts(receiver: CallbackReceiver, client: Any, count: int = 1) -> list[Any]:
    """Hand each receipt the gateway pushed to the portal's endpoint, as Aliyun would."""
    pushed = receiver.wait(count)
    return [
        client.post(RECEIPTS_URL, data=item.body, content_type="application/json")
        for item in pushed[-count:]
    ]


@dataclass
class RecordingPush:
    name: str = "recording-push"
    channel: str = "push"
    sent: list[str] = field(default_factory=list)

    def send(self, *, to: Recipient, text: str, reference: str, **_: Any) -> Sent:
        self.sent.append(reference)
        return Sent(message_id=f"push-{reference}", delivered=True)


def test_a_delivered_receipt_settles_the_sms_delivery_once(
    make_loan: Any, gateway: SandboxSmsGateway[Any], running_sandbox: RunningSandbox, client: Any
) -> None:
    notice = _succeeded_notice(make_loan)
    assert _dispatch_all(T0, provider_from_settings) == [NoticeStatus.DELIVERED]
    sms = notice.deliveries.get(channel=DeliveryChannel.SMS)
    assert (sms.status, sms.receipt_at) == (DeliveryStatus.SENT, None)
    [message] = gateway.messages
    assert (message.biz_id, message.out_id) == (sms.provider_message_id, str(notice.pk))
    assert message.template_param == {k: str(v) for k, v in notice.params.items()}

    [response] = _relay_receipts(running_sandbox.receiver, client)

    assert (response.status_code, response.json()) == (200, ACK)
    sms.refresh_from_db()
    assert sms.status == DeliveryStatus.DELIVERED
    assert sms.receipt_at is not None
    settled_at = sms.receipt_at
    # Aliyun may push again, even with another word later: the first receipt stands.
    pushed = running_sandbox.receiver.received[0].body
    [first] = json.loads(pushed)
    later = {**first, "success": False, "err_code": "UNDELIV", "report_time": "2030-01-01 00:00:00"}
    for body in (pushed, json.dumps([later])):
        again = client.post(RECEIPTS_URL, data=body, content_type="application/json")
        assert again.json() == ACK
    sms.refresh_from_db()
    assert (sms.status, sms.receipt_at, sms.error) == (DeliveryStatus.DELIVERED, settled_at, "")
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.DELIVERED


def test_an_undelivered_receipt_sends_the_notice_through_the_next_channel(
    make_loan: Any, gateway: SandboxSmsGateway[Any], running_sandbox: RunningSandbox, client: Any
) -> None:
    gateway.faults = SmsFaults(undelivered_rate=1.0)
    push = RecordingPush()

    def providers(channel: str) -> Any:
        return provider_from_settings("sms") if channel == "sms" else push

    notice = _succeeded_notice(make_loan)
    assert _dispatch_all(T0, providers) == [NoticeStatus.DELIVERED]
    assert push.sent == []

    [response] = _relay_receipts(running_sandbox.receiver, client)

    assert response.json() == ACK
    sms = notice.deliveries.get(channel=DeliveryChannel.SMS)
    assert sms.status == DeliveryStatus.FAILED
    assert sms.error.startswith("UNDELIV")
    assert sms.receipt_at is not None
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.PENDING
    assert notice.status_reason.startswith("sms not delivered")
    assert _dispatch_all(T0 + timedelta(seconds=5), providers) == [NoticeStatus.DELIVERED]
    assert push.sent == [str(notice.pk)]
    assert len(gateway.messages) == 1  # the phone was not sent the same text again
    tries = list(notice.deliveries.values_list("channel", "status"))
    assert tries == [
        ("in_app", "delivered"),
        ("sms", "failed"),  # the receipt
        ("sms", "failed"),  # not sent again
        ("push", "delivered"),
    ]


def test_an_undelivered_receipt_leaves_a_notice_another_channel_carried(
    make_loan: Any, gateway: SandboxSmsGateway[Any], running_sandbox: RunningSandbox, client: Any
) -> None:
    gateway.faults = SmsFaults(undelivered_rate=1.0)
    notice = _succeeded_notice(make_loan)
    _dispatch_all(T0, provider_from_settings)
    Delivery.objects.create(
        notice=notice,
        channel=DeliveryChannel.PUSH,
        provider="recording-push",
        status=DeliveryStatus.DELIVERED,
        attempted_at=T0,
    )

    _relay_receipts(running_sandbox.receiver, client)

    assert notice.deliveries.get(channel=DeliveryChannel.SMS).status == DeliveryStatus.FAILED
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.DELIVERED


def test_the_receipt_endpoint_acknowledges_unknown_messages_and_refuses_garbage(
    client: Any,
) -> None:
    unknown = [{"biz_id": "nope^0", "success": True, "err_code": "DELIVERED", "out_id": "1"}]
    response = client.post(RECEIPTS_URL, data=json.dumps(unknown), content_type="application/json")
    assert (response.status_code, response.json()) == (200, ACK)
    garbage = client.post(RECEIPTS_URL, data=b"{not json", content_type="application/json")
    assert garbage.status_code == 400
    assert garbage.json()["code"] != 0
    assert client.get(RECEIPTS_URL).status_code == 405


# --- FCM against a local stand-in for Google -------------------------------------------

PROJECT = "anxin-test"
ACCOUNT_EMAIL = "push@anxin-test.iam.gserviceaccount.com"
UNREGISTERED = {
    "error": {
        "code": 404,
        "status": "NOT_FOUND",
        "details": [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
        ],
    }
}


@dataclass
class FakeGoogle:
    url: str
    public_key: rsa.RSAPublicKey
    account_path: Path
    token_forms: list[dict[str, str]] = field(default_factory=list)
    sends: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    send_status: int = 200
    send_answer: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account_path = tmp_path / "service-account.json"
    fake = FakeGoogle(url="", public_key=key.public_key(), account_path=account_path)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/token":
                fake.token_forms.append(dict(parse_qsl(body.decode())))
                status, answer = (
                    200,
                    {
                        "access_token": f"tok-{len(fake.token_forms)}",
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    },
                )
            elif self.path == f"/v1/projects/{PROJECT}/messages:send":
                fake.sends.append((self.headers.get("Authorization", ""), json.loads(body)))
                status = fake.send_status
                answer = fake.send_answer or {
                    "name": f"projects/{PROJECT}/messages/{len(fake.sends)}"
                }
            else:
                status, answer = 404, {"error": {"status": "NOT_FOUND"}}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_port}"
    account_path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "kid-1",
                "private_key": pem,
                "client_email": ACCOUNT_EMAIL,
                "token_uri": f"{fake.url}/token",
            }
        )
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield fake
    server.shutdown()


def _verified_jwt(assertion: str, public_key: rsa.RSAPublicKey) -> tuple[dict, dict]:
    """Header and claims of an RS256 JWT, after checking its signature (raises if bad)."""

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header, claims, signed = assertion.split(".")
    public_key.verify(
        decode(signed), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return json.loads(decode(header)), json.loads(decode(claims))


def _device(token: str = "device-1") -> Recipient:
    return Recipient(user_id=7, phone="", push_token=token)


def test_fcm_trades_a_signed_jwt_for_a_token_and_sends_with_it(
    google: FakeGoogle, settings: Any
) -> None:
    settings.NOTIFY_PUSH_PROVIDER = "fcm"
    settings.FCM_SERVICE_ACCOUNT_PATH = str(google.account_path)
    settings.FCM_PROJECT_ID = ""  # taken from the key file
    settings.FCM_API_URL = google.url
    settings.FCM_TOKEN_URL = f"{google.url}/token"
    provider = provider_from_settings("push")
    assert provider is not None

    first = provider.send(to=_device(), text="【安心还款】还款成功", reference="42", kind="x")
    provider.send(to=_device(), text="second", reference="43")

    assert first == Sent(message_id=f"projects/{PROJECT}/messages/1", delivered=True)
    [form] = google.token_forms  # the token was cached for the second send
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims = _verified_jwt(form["assertion"], google.public_key)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert claims["iss"] == ACCOUNT_EMAIL
    assert claims["aud"] == f"{google.url}/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    head, _, signed = form["assertion"].split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "iss": "x@evil"}).encode()).decode()
    with pytest.raises(InvalidSignature):  # the check above can fail
        _verified_jwt(f"{head}.{forged.rstrip('=')}.{signed}", google.public_key)
    assert [auth for auth, _ in google.sends] == ["Bearer tok-1", "Bearer tok-1"]
    message = google.sends[0][1]["message"]
    assert message["token"] == "device-1"
    assert message["notification"]["body"] == "【安心还款】还款成功"
    assert message["data"] == {"notice_id": "42", "kind": "x"}


def test_fcm_renews_the_access_token_shortly_before_it_expires(google: FakeGoogle) -> None:
    config = FcmConfig(
        account=load_service_account(google.account_path),
        project_id=PROJECT,
        api_url=google.url,
        token_url=f"{google.url}/token",
    )
    clock = [1_800_000_000.0]
    provider = FcmProvider(config, tokens=AccessTokens(config, clock=lambda: clock[0]))

    provider.send(to=_device(), text="a", reference="1")
    clock[0] += 3600 - 301  # still five minutes and a second to go
    provider.send(to=_device(), text="b", reference="2")
    clock[0] += 2  # inside the renewal margin
    provider.send(to=_device(), text="c", reference="3")

    assert [auth for auth, _ in google.sends] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_fcm_refusals_and_missing_devices_become_provider_errors(google: FakeGoogle) -> None:
    account = load_service_account(google.account_path)
    provider = FcmProvider(
        FcmConfig(
            account=account, project_id=PROJECT, api_url=google.url, token_url=f"{google.url}/token"
        )
    )
    with pytest.raises(ProviderError, match="no device registered for push"):
        provider.send(to=_device(""), text="a", reference="1")
    assert (google.token_forms, google.sends) == ([], [])
    google.send_status, google.send_answer = 404, UNREGISTERED
    with pytest.raises(ProviderError, match="UNREGISTERED"):
        provider.send(to=_device("stale-device"), text="a", reference="1")


# --- Settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"NOTIFY_SMS_PROVIDER": "twilio"}, "NOTIFY_SMS_PROVIDER"),
        ({"NOTIFY_PUSH_PROVIDER": "apns"}, "NOTIFY_PUSH_PROVIDER"),
        ({"ALIYUN_SMS_TEMPLATE_CODES": "{not json"}, "ALIYUN_SMS_TEMPLATE_CODES"),
        ({"ALIYUN_SMS_TEMPLATE_CODES": '["SMS_1"]'}, "ALIYUN_SMS_TEMPLATE_CODES"),
        ({"ALIYUN_SMS_ENDPOINT": "dysmsapi.aliyuncs.com"}, "ALIYUN_SMS_ENDPOINT"),
        (
            {
                "NOTIFY_SMS_PROVIDER": "aliyun",
                "ALIYUN_SMS_ENDPOINT": "https://dysmsapi.aliyuncs.com/",
            },
            "ALIYUN_SMS_ACCESS_KEY_ID",
        ),
        ({"NOTIFY_PUSH_PROVIDER": "fcm"}, "FCM_SERVICE_ACCOUNT_PATH"),
        ({"ALIYUN_SMS_TEMPLATE_CODES": '{"payment_succeeded": "SMS_1"}'}, None),
    ],
)
def test_a_malformed_notification_setting_stops_start_up_naming_it(
    variables: dict[str, str], named: str | None
) -> None:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("ALIYUN_", "FCM_", "NOTIFY_"))
    }
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, **variables, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if named is None:
        assert started.returncode == 0, started.stderr
    else:
        assert started.returncode != 0
        assert "ImproperlyConfigured" in started.stderr
        assert named in started.stderr.splitlines()[-1]
