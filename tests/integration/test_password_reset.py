"""Password reset by SMS code: pages and rules (issue 7).

The SMS provider is replaced by a recorder, so the test reads the code the borrower
would receive. Pages are read in English (``django_language`` cookie).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from notifications.providers.base import ProviderError, Recipient, Sent
from repayments.models import AuditEntry, PasswordResetCode, User
from repayments.services import password_reset as service
from repayments.tasks import send_password_reset_code, sweep_password_reset_codes

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "Harbour-Lantern-2718"
PHONE = "13912345678"
UNKNOWN = "13800000001"


class RecordingSms:
    name = "recording-sms"
    channel = "sms"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(
        self,
        *,
        to: Recipient,
        text: str,
        reference: str,
        kind: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Sent:
        self.sent.append({"to": to.phone, "text": text, "kind": kind, "params": dict(params or {})})
        return Sent(message_id=reference, delivered=True)

    def last_code(self) -> str:
        match = re.search(r"(?<!\d)(\d{6})(?!\d)", self.sent[-1]["text"])
        assert match, self.sent[-1]["text"]
        return match.group(1)


@pytest.fixture
def sms(monkeypatch) -> RecordingSms:
    recorder = RecordingSms()
    monkeypatch.setattr(service, "sms_provider", lambda: recorder)
    return recorder


@pytest.fixture
def borrower(make_borrower) -> User:
    return make_borrower(phone=PHONE)


@pytest.fixture
def web(client):
    client.cookies["django_language"] = "en"
    return client


def text(response: Any) -> str:
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html_lib.unescape(body))


def ask_code(web, phone: str = PHONE) -> Any:
    return web.post(reverse("password-reset"), {"phone": phone})


def send_code(web, code: str, password: str = NEW_PASSWORD, again: str | None = None) -> Any:
    return web.post(
        reverse("password-reset-verify"),
        {"code": code, "new_password1": password, "new_password2": again or password},
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_the_login_page_links_to_password_reset(web) -> None:
    assert reverse("password-reset") in web.get(reverse("login")).content.decode()


def test_a_code_by_sms_resets_the_password_and_the_borrower_signs_in(web, borrower, sms) -> None:
    asked = ask_code(web, "139 1234 5678")
    assert asked.status_code == 302
    assert asked["Location"] == reverse("password-reset-verify")
    assert len(sms.sent) == 1
    assert sms.sent[0]["to"] == PHONE
    assert sms.sent[0]["kind"] == "verification_code"
    code = sms.last_code()
    # Only a keyed hash is stored.
    row = PasswordResetCode.objects.get(phone=PHONE)
    assert code not in row.code_hash
    assert row.expires_at - row.created_at == timedelta(minutes=10)
    page = web.get(asked["Location"])
    assert "139****5678" in text(page)

    done = send_code(web, code)

    assert done.status_code == 302
    assert done["Location"] == reverse("login")
    assert User.objects.get(pk=borrower.pk).check_password(NEW_PASSWORD)
    signed_in = web.post(reverse("login"), {"username": PHONE, "password": NEW_PASSWORD})
    assert signed_in.status_code == 302
    assert signed_in["Location"] == reverse("home")
    # Used once, and audited.
    assert PasswordResetCode.objects.get(phone=PHONE).used_at is not None
    assert AuditEntry.objects.filter(action="password_reset.completed").count() == 1


def test_an_unknown_number_reads_exactly_like_a_known_one(web, borrower, sms) -> None:
    known = ask_code(web, PHONE)
    known_page = text(web.get(known["Location"]))
    other = web.__class__()
    other.cookies["django_language"] = "en"
    unknown = ask_code(other, UNKNOWN)
    unknown_page = text(other.get(unknown["Location"]))

    assert unknown.status_code == known.status_code == 302
    assert unknown["Location"] == known["Location"]
    assert unknown_page.replace("138****0001", "X") == known_page.replace("139****5678", "X")
    assert len(sms.sent) == 1  # the unknown number is not texted
    assert PasswordResetCode.objects.filter(phone=UNKNOWN, user=None).count() == 1

    # A guessed code for the unknown number is refused the same way, tries counted alike.
    refused = send_code(other, "123456")
    refused_known = send_code(web, wrong(sms.last_code()))
    assert refused.status_code == refused_known.status_code == 400
    assert "This code is wrong or has expired. You can try 4 more times." in text(refused)
    assert "This code is wrong or has expired. You can try 4 more times." in text(refused_known)
    # Throttled alike, too.
    assert ask_code(other, UNKNOWN).status_code == ask_code(web, PHONE).status_code == 429


def test_a_wrong_code_changes_nothing_and_says_how_many_tries_are_left(web, borrower, sms) -> None:
    ask_code(web)
    response = send_code(web, wrong(sms.last_code()))
    assert response.status_code == 400
    assert "You can try 4 more times." in text(response)
    assert not User.objects.get(pk=borrower.pk).check_password(NEW_PASSWORD)
    assert PasswordResetCode.objects.get(phone=PHONE).tries == 1


def test_an_expired_code_is_refused(web, borrower, sms) -> None:
    ask_code(web)
    PasswordResetCode.objects.filter(phone=PHONE).update(
        created_at=timezone.now() - timedelta(minutes=11),
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    response = send_code(web, sms.last_code())
    assert response.status_code == 400
    assert "This code is wrong or has expired. Ask for a new code." in text(response)
    assert not User.objects.get(pk=borrower.pk).check_password(NEW_PASSWORD)


def test_five_wrong_codes_lock_the_code_even_the_right_one(web, borrower, sms) -> None:
    ask_code(web)
    code = sms.last_code()
    for _ in range(service.MAX_WRONG_TRIES - 1):
        assert send_code(web, wrong(code)).status_code == 400
    fifth = send_code(web, wrong(code))
    assert fifth.status_code == 429
    assert "Too many wrong codes" in text(fifth)
    right = send_code(web, code)
    assert right.status_code == 429
    assert not User.objects.get(pk=borrower.pk).check_password(NEW_PASSWORD)
    assert AuditEntry.objects.filter(action="password_reset.locked").count() == 1


def test_a_weak_or_mismatched_password_is_refused_and_the_code_stays_usable(
    web, borrower, sms
) -> None:
    ask_code(web)
    code = sms.last_code()
    weak = send_code(web, code, password="12345678")
    assert weak.status_code == 400
    assert "This password is entirely numeric." in text(weak)
    mismatched = send_code(web, code, again=NEW_PASSWORD + "x")
    assert "The two passwords do not match." in text(mismatched)
    assert send_code(web, code).status_code == 302
    assert User.objects.get(pk=borrower.pk).check_password(NEW_PASSWORD)


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef"])
def test_a_malformed_code_is_a_field_error(web, borrower, sms, bad) -> None:
    ask_code(web)
    response = send_code(web, bad)
    assert response.status_code == 400
    assert "Enter the 6-digit code from the SMS." in text(response)
    assert PasswordResetCode.objects.get(phone=PHONE).tries == 0


@pytest.mark.parametrize("bad", ["", "12345", "23912345678", "phone"])
def test_a_malformed_number_is_a_field_error_and_nothing_is_stored(web, sms, bad) -> None:
    response = ask_code(web, bad)
    assert response.status_code == 400
    shown = text(response)
    assert "Enter your mobile number." in shown or "Enter an 11-digit mainland" in shown
    assert not PasswordResetCode.objects.exists()


def test_requests_are_throttled_per_number_and_per_ip(web, borrower, sms) -> None:
    now = timezone.now()
    ask_code(web)
    assert ask_code(web).status_code == 429  # within a minute
    assert "You can ask for another in" in text(ask_code(web))
    # Five an hour per number, whatever the spacing.
    PasswordResetCode.objects.all().delete()
    for minutes in range(service.PHONE_MAX_PER_HOUR):
        service.password_reset_request(
            phone=PHONE, ip="10.0.0.9", now=now - timedelta(minutes=50 - minutes * 5)
        )
    limited = ask_code(web)
    assert limited.status_code == 429
    assert "Too many codes were asked for this number" in text(limited)
    # Twenty an hour per IP, across numbers.
    for n in range(service.IP_MAX_PER_HOUR):
        service.password_reset_request(
            phone=f"1370000{n:04d}", ip="127.0.0.1", now=now - timedelta(minutes=30)
        )
    from_ip = ask_code(web, "13600000000")
    assert from_ip.status_code == 429
    assert "from this network" in text(from_ip)


def test_the_verify_step_without_a_number_goes_back_to_step_one(web) -> None:
    response = web.get(reverse("password-reset-verify"))
    assert response.status_code == 302
    assert response["Location"] == reverse("password-reset")


def test_the_sms_text_names_the_code_and_its_validity(borrower, sms) -> None:
    requested = service.password_reset_request(phone=PHONE, ip=None, now=timezone.now())
    assert service.password_reset_send(code_id=requested.code_id, now=timezone.now()) is True
    message = sms.sent[-1]
    assert message["params"] == {"code": sms.last_code(), "minutes": 10}
    assert "10分钟内有效" in message["text"]
    assert message["text"].startswith("【安心还款】")


def test_the_code_is_texted_by_a_task_queued_alike_for_known_and_unknown_numbers(
    web, borrower, sms, monkeypatch
) -> None:
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(send_password_reset_code, "delay", lambda **kw: queued.append(kw))
    ask_code(web, PHONE)
    other = web.__class__()
    other.cookies["django_language"] = "en"
    ask_code(other, UNKNOWN)

    assert sms.sent == []  # nothing was texted while the borrower waited
    known, unknown = (PasswordResetCode.objects.get(phone=p) for p in (PHONE, UNKNOWN))
    assert queued == [
        {"code_id": known.pk, "language": "en"},
        {"code_id": unknown.pk, "language": "en"},
    ]
    assert known.code_hash == unknown.code_hash == ""  # no code exists before the task

    assert send_password_reset_code(**queued[1]) is False  # unknown: nothing to text
    assert send_password_reset_code(**queued[0]) is True
    assert len(sms.sent) == 1
    code = sms.last_code()
    # A redelivered task does not replace the code the borrower already has.
    assert send_password_reset_code(**queued[0]) is False
    assert len(sms.sent) == 1
    response = send_code(web, code)
    assert response.status_code == 302


class FailingSms(RecordingSms):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def send(self, **kwargs: Any) -> Sent:
        if self.failures:
            self.failures -= 1
            raise ProviderError("gateway timeout")
        return super().send(**kwargs)


def test_a_broker_that_cannot_take_the_task_changes_nothing_the_borrower_sees(
    web, borrower, sms, monkeypatch
) -> None:
    def broker_down(**kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(send_password_reset_code, "delay", broker_down)
    response = ask_code(web)
    assert response.status_code == 302
    assert "we have sent it a 6-digit code" in text(web.get(response["Location"]))
    assert sms.sent == []

    # The sweeper texts it once the request is SEND_RETRY_AFTER old.
    row = PasswordResetCode.objects.get()
    assert sweep_password_reset_codes() == 0  # too recent: its task may still come
    PasswordResetCode.objects.update(created_at=row.created_at - service.SEND_RETRY_AFTER)
    assert sweep_password_reset_codes() == 1
    assert send_code(web, sms.last_code()).status_code == 302


def test_a_failed_sms_is_sent_again_with_a_new_code(borrower, monkeypatch) -> None:
    failing = FailingSms(failures=1)
    monkeypatch.setattr(service, "sms_provider", lambda: failing)
    now = timezone.now()
    requested = service.password_reset_request(phone=PHONE, ip=None, now=now)

    assert service.password_reset_send(code_id=requested.code_id, now=now) is False
    assert failing.sent == []
    # Not before SEND_RETRY_AFTER (another worker could be sending it) ...
    soon = now + service.SEND_RETRY_AFTER / 2
    assert service.password_reset_unsent(now=soon) == []
    later = now + service.SEND_RETRY_AFTER
    assert service.password_reset_unsent(now=later) == [requested.code_id]
    assert service.password_reset_send(code_id=requested.code_id, now=later) is True
    assert len(failing.sent) == 1
    assert service.password_reset_unsent(now=later + service.SEND_RETRY_AFTER) == []


def test_an_expired_or_superseded_request_is_not_texted(borrower, sms) -> None:
    now = timezone.now()
    first = service.password_reset_request(phone=PHONE, ip=None, now=now)
    newer = service.password_reset_request(
        phone=PHONE, ip=None, now=now + service.PHONE_MIN_INTERVAL
    )
    later = now + service.PHONE_MIN_INTERVAL
    assert service.password_reset_send(code_id=first.code_id, now=later) is False  # superseded
    assert service.password_reset_send(code_id=newer.code_id, now=later) is True
    assert sms.sent[-1]["params"]["minutes"] == 10

    expired = newer.valid_for + service.PHONE_MIN_INTERVAL + timedelta(minutes=1)
    third = service.password_reset_request(phone=PHONE, ip=None, now=now + expired)
    assert service.password_reset_send(code_id=third.code_id, now=now + expired * 3) is False
    assert service.password_reset_unsent(now=now + expired * 3) == []


def test_the_sms_says_how_long_the_code_has_left(borrower, sms) -> None:
    now = timezone.now()
    requested = service.password_reset_request(phone=PHONE, ip=None, now=now)
    assert service.password_reset_send(code_id=requested.code_id, now=now + timedelta(minutes=7))
    assert sms.sent[-1]["params"]["minutes"] == 3


def test_a_texted_code_is_never_replaced_even_by_a_late_redelivery(borrower, sms) -> None:
    now = timezone.now()
    requested = service.password_reset_request(phone=PHONE, ip=None, now=now)
    assert service.password_reset_send(code_id=requested.code_id, now=now) is True
    late = now + service.SEND_RETRY_AFTER * 3
    assert service.password_reset_send(code_id=requested.code_id, now=late) is False
    assert service.password_reset_unsent(now=late) == []
    assert len(sms.sent) == 1
