"""Firebase Cloud Messaging push over the HTTP v1 API.

Protocol summary (Google's "Send a message using FCM HTTP v1" and "OAuth 2.0
for server to server applications" pages):

* Auth: a service account signs a JWT (RS256; claims ``iss`` = the account's
  e-mail, ``scope`` = ``.../auth/firebase.messaging``, ``aud`` = the token
  URI, ``iat``, ``exp`` at most an hour later) and trades it at the token URI
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``)
  for an access token (``{"access_token", "expires_in", "token_type"}``). The
  token is cached until shortly before it expires.
* Send: ``POST {api}/v1/projects/{project}/messages:send`` with
  ``Authorization: Bearer <token>`` and ``{"message": {"token": <device>,
  "notification": {...}, "data": {...}}}``; the answer names the message
  (``{"name": "projects/p/messages/..."}``). Errors are JSON
  ``{"error": {"status", "details": [{"errorCode": ...}]}}``.

FCM has no delivery receipt over this API: an accepted message counts as
delivered (``Sent.delivered=True``) although the phone may be offline.

Gap: no device tokens are stored yet (``Recipient.push_token`` is always empty
when the dispatcher calls), so every send raises "no device registered for
push" until the app registers devices. Also: FCM only reaches Android phones
with Google Play services, which most phones sold in mainland China lack.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from notifications.providers.base import ProviderError, Recipient, Sent

NAME = "fcm"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600  # Google's maximum
# Renew this long before the access token expires, so no send races the expiry.
REFRESH_MARGIN_SECONDS = 300


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    private_key_id: str = ""
    project_id: str = ""


def load_service_account(path: Path | str) -> ServiceAccount:
    """Read a Google service-account JSON key file.

    :raises ValueError: the file is not such a key (or not an RSA one).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: the service account key is not an RSA key")
    return ServiceAccount(
        client_email=data["client_email"],
        private_key=key,
        private_key_id=data.get("private_key_id", ""),
        project_id=data.get("project_id", ""),
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt_assertion(account: ServiceAccount, *, token_url: str, issued_at: int) -> str:
    """The signed JWT traded for an access token (RS256 = RSASSA-PKCS1-v1_5 + SHA-256)."""
    header = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": token_url,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME_SECONDS,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signed = account.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signed)}"


@dataclass(frozen=True)
class FcmConfig:
    account: ServiceAccount
    project_id: str
    api_url: str = "https://fcm.googleapis.com"
    token_url: str = "https://oauth2.googleapis.com/token"
    title: str = "安心还款"
    timeout: float = 10.0


class AccessTokens:
    """One cached OAuth2 access token per provider, renewed shortly before expiry."""

    def __init__(self, config: FcmConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0

    def get(self) -> str:
        """:raises ProviderError: the token endpoint refused or could not be reached."""
        with self._lock:
            now = self._clock()
            if not self._token or now >= self._expires_at - REFRESH_MARGIN_SECONDS:
                self._token, lifetime = self._fetch(int(now))
                self._expires_at = now + lifetime
            return self._token

    def forget(self) -> None:
        with self._lock:
            self._token = ""

    def _fetch(self, now: int) -> tuple[str, int]:
        assertion = jwt_assertion(
            self.config.account, token_url=self.config.token_url, issued_at=now
        )
        try:
            response = requests.post(
                self.config.token_url,
                data={"grant_type": GRANT_TYPE, "assertion": assertion},
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            raise ProviderError(f"fcm token endpoint unreachable: {type(exc).__name__}") from None
        answer = _json(response)
        token = answer.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = answer.get("error") or f"HTTP {response.status_code}"
            raise ProviderError(f"fcm token refused: {error}"[:200])
        return token, int(answer.get("expires_in") or 3600)


class FcmProvider:
    """One push message per notice to the borrower's registered device."""

    name = NAME
    channel = "push"

    def __init__(self, config: FcmConfig, *, tokens: AccessTokens | None = None) -> None:
        self.config = config
        self.tokens = tokens or AccessTokens(config)
        project = quote(config.project_id, safe="")
        self.send_url = f"{config.api_url.rstrip('/')}/v1/projects/{project}/messages:send"

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        """:raises ProviderError: no device, refused (with FCM's error code), or unreachable."""
        del params  # the rendered text is the message; the app fetches details itself
        if not to.push_token:
            raise ProviderError("no device registered for push")
        message = {
            "token": to.push_token,
            "notification": {"title": self.config.title, "body": text},
            # FCM data values must be strings.
            "data": {"notice_id": reference, "kind": kind},
        }
        try:
            response = requests.post(
                self.send_url,
                json={"message": message},
                headers={"Authorization": f"Bearer {self.tokens.get()}"},
                timeout=self.config.timeout,
            )
        except requests.RequestException as exc:
            raise ProviderError(f"fcm unreachable: {type(exc).__name__}") from None
        answer = _json(response)
        if response.status_code == 200 and answer.get("name"):
            return Sent(message_id=str(answer["name"]), delivered=True)
        if response.status_code == 401:
            self.tokens.forget()  # revoked or expired early: the next send fetches anew
        raise ProviderError(f"fcm {_error_code(answer, response.status_code)}")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _error_code(answer: Mapping[str, Any], status: int) -> str:
    """The most specific code: ``details[].errorCode`` (UNREGISTERED...), else ``status``."""
    error = answer.get("error")
    if not isinstance(error, dict):
        return f"HTTP {status}"
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status") or f"HTTP {status}")
