"""Resetting a borrower's password with a one-time code sent by SMS.

- The code is 6 digits, valid 10 minutes, allows 5 wrong tries; only a keyed hash
  is stored (HMAC with the project's secret and a per-code salt).
- Requests are throttled per phone number and per IP address, counted from the
  stored rows (so the limits hold across web processes).
- Nothing tells a registered number from an unknown one: a row is written and
  throttled either way, the answer is the same, and an unknown number's row can
  never match. The code is made and texted afterwards, by a task queued the same
  way for both (:func:`password_reset_send`), so the answer also takes the same
  time: the SMS provider's round trip happens only for a registered number, and
  never while the borrower waits.
- The SMS goes straight to the configured SMS provider, not through the outbox: the
  outbox would keep the code in clear, show it in the in-app inbox, and hold it back
  in quiet hours.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.db.models import Q
from django.utils.crypto import constant_time_compare, salted_hmac

from notifications.providers.base import Provider, ProviderError, Recipient
from notifications.services import default_provider
from notifications.texts import DEFAULT_TEXTS
from repayments.domain.errors import DomainError
from repayments.domain.identity import mask_phone, normalise_phone
from repayments.models import PasswordResetCode, User
from repayments.services.audit import audit_append

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_VALID_FOR = timedelta(minutes=10)
MAX_WRONG_TRIES = 5
# A code not texted this long after it was asked for (or after a send started) is
# sent again: the task was lost, its worker died, or the SMS provider failed.
SEND_RETRY_AFTER = timedelta(seconds=30)
PHONE_MIN_INTERVAL = timedelta(seconds=60)
PHONE_MAX_PER_HOUR = 5
IP_MAX_PER_HOUR = 20
_HMAC_PURPOSE = "repayments.password_reset.code"


class ResetThrottled(DomainError):
    """Too many codes were asked for; wait before asking again."""

    code = "reset_throttled"

    def __init__(self, *, retry_after: timedelta, by_ip: bool) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.by_ip = by_ip


class ResetCodeInvalid(DomainError):
    """The code is wrong, or has expired, or was already used."""

    code = "reset_code_invalid"

    def __init__(self, *, tries_left: int) -> None:
        super().__init__()
        self.tries_left = tries_left


class ResetCodeLocked(DomainError):
    """Too many wrong codes: ask for a new one."""

    code = "reset_code_locked"


@dataclass(frozen=True)
class ResetRequested:
    masked_phone: str
    valid_for: timedelta
    code_id: int  # queue password_reset_send with it, whether or not the number is known


def password_reset_request(*, phone: str, ip: str | None, now: datetime) -> ResetRequested:
    """Record a request for a code for ``phone``; the code itself comes from
    :func:`password_reset_send`, which the caller queues with ``code_id``.

    The answer is the same whether or not the number is registered.

    :raises InvalidIdentity: when ``phone`` is not a mainland mobile number.
    :raises ResetThrottled: when this number or this IP asked too often.
    """
    number = normalise_phone(phone)
    _check_throttle(number, ip, now)
    user = User.objects.filter(phone=number, is_active=True).first()
    with transaction.atomic():
        row = PasswordResetCode.objects.create(
            phone=number,
            user=user,
            code_hash="",  # matches nothing until the code is made
            requested_ip=ip,
            created_at=now,
            expires_at=now + CODE_VALID_FOR,
        )
        audit_append(
            action="password_reset.requested",
            object_type="user" if user else "phone",
            object_id=user.pk if user else mask_phone(number),
            now=now,
            data={"ip": ip or "", "registered": user is not None, "code_id": row.pk},
        )
    return ResetRequested(masked_phone=mask_phone(number), valid_for=CODE_VALID_FOR, code_id=row.pk)


def password_reset_send(*, code_id: int, now: datetime, language: str = "zh-hans") -> bool:
    """Make the requested code and text it, if the number is registered; True if sent.

    Safe to run twice: once texted, a code is never replaced. A request that expired,
    was used, or was followed by a newer one for the number is not texted (only the
    newest code is accepted). A send that failed, or whose worker died, is tried again
    with a new code by :func:`password_reset_unsent` after ``SEND_RETRY_AFTER``.
    """
    with transaction.atomic():
        row = (
            # The code row only: its user may be absent (an outer join PostgreSQL
            # cannot lock) and is only read.
            PasswordResetCode.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=code_id)
            .first()
        )
        if row is None or row.user is None or not _still_sendable(row, now):
            return False
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        salt = secrets.token_hex(8)
        row.code_hash = f"{salt}${_digest(salt, code)}"
        row.send_started_at = now
        row.save(update_fields=["code_hash", "send_started_at"])
    minutes = max(1, math.ceil((row.expires_at - now).total_seconds() / 60))
    if not _send(row.user, row.phone, code, row.pk, language, minutes=minutes):
        return False
    PasswordResetCode.objects.filter(pk=row.pk).update(sent_at=now)
    return True


def password_reset_unsent(*, now: datetime) -> list[int]:
    """Requests of registered numbers whose code was never texted (a lost task, a dead
    worker, a failed SMS): the sweeper sends them again."""
    stale = now - SEND_RETRY_AFTER
    return list(
        PasswordResetCode.objects.filter(
            user__isnull=False,
            used_at__isnull=True,
            sent_at__isnull=True,
            expires_at__gt=now + SEND_RETRY_AFTER,
            created_at__lte=stale,
        )
        .filter(Q(send_started_at__isnull=True) | Q(send_started_at__lte=stale))
        .values_list("pk", flat=True)
    )


def _still_sendable(row: PasswordResetCode, now: datetime) -> bool:
    if row.sent_at is not None or row.used_at is not None or row.expires_at <= now:
        return False
    if row.send_started_at is not None and now - row.send_started_at < SEND_RETRY_AFTER:
        return False  # another worker is texting it right now
    newer = PasswordResetCode.objects.filter(phone=row.phone, created_at__gt=row.created_at)
    return not newer.exists()


def password_reset_confirm(*, phone: str, code: str, new_password: str, now: datetime) -> User:
    """Check the latest code for ``phone`` and, if it matches, set ``new_password``.

    :raises InvalidIdentity: when ``phone`` is not a mainland mobile number.
    :raises ResetCodeInvalid: wrong, expired or used code (with the tries left).
    :raises ResetCodeLocked: after MAX_WRONG_TRIES wrong codes.
    :raises django.core.exceptions.ValidationError: the password fails the validators
        (the code stays valid, so the borrower can choose another password).
    """
    number = normalise_phone(phone)
    with transaction.atomic():
        row = (
            PasswordResetCode.objects.select_for_update()
            .filter(phone=number, used_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        if row is None or row.expires_at <= now:
            raise ResetCodeInvalid(tries_left=0)
        if row.tries >= MAX_WRONG_TRIES:
            raise ResetCodeLocked()
        matches = row.user is not None and _matches(row.code_hash, code.strip())
        if matches and row.user is not None:
            user = row.user
            validate_password(new_password, user)
            user.set_password(new_password)
            user.save(update_fields=["password"])
            PasswordResetCode.objects.filter(phone=number, used_at__isnull=True).update(used_at=now)
            audit_append(
                action="password_reset.completed",
                object_type="user",
                object_id=user.pk,
                now=now,
                data={"code_id": row.pk},
            )
            return user
        row.tries += 1
        row.save(update_fields=["tries"])
        if row.tries >= MAX_WRONG_TRIES:
            audit_append(
                action="password_reset.locked",
                object_type="user" if row.user_id else "phone",
                object_id=row.user_id or mask_phone(number),
                now=now,
                data={"code_id": row.pk},
            )
    # Outside the block: the wrong try is committed before the refusal.
    if row.tries >= MAX_WRONG_TRIES:
        raise ResetCodeLocked()
    raise ResetCodeInvalid(tries_left=MAX_WRONG_TRIES - row.tries)


def _check_throttle(number: str, ip: str | None, now: datetime) -> None:
    hour_ago = now - timedelta(hours=1)
    if ip:
        by_ip = PasswordResetCode.objects.filter(requested_ip=ip, created_at__gt=hour_ago)
        times = list(by_ip.order_by("created_at").values_list("created_at", flat=True))
        if len(times) >= IP_MAX_PER_HOUR:
            raise ResetThrottled(retry_after=times[0] + timedelta(hours=1) - now, by_ip=True)
    recent = list(
        PasswordResetCode.objects.filter(phone=number, created_at__gt=hour_ago)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    if recent and now - recent[-1] < PHONE_MIN_INTERVAL:
        raise ResetThrottled(retry_after=recent[-1] + PHONE_MIN_INTERVAL - now, by_ip=False)
    if len(recent) >= PHONE_MAX_PER_HOUR:
        raise ResetThrottled(retry_after=recent[0] + timedelta(hours=1) - now, by_ip=False)


def _digest(salt: str, code: str) -> str:
    return salted_hmac(_HMAC_PURPOSE, f"{salt}:{code}", algorithm="sha256").hexdigest()


def _matches(stored: str, code: str) -> bool:
    salt, _sep, digest = stored.partition("$")
    return constant_time_compare(digest, _digest(salt, code))


def sms_provider() -> Provider | None:
    """The configured SMS provider (a seam for tests)."""
    return default_provider("sms")


def _send(user: User, phone: str, code: str, code_id: int, language: str, *, minutes: int) -> bool:
    """Text the code, saying how many minutes it stays valid. A failure is logged and
    left to the sweeper."""
    provider = sms_provider()
    if provider is None:
        logger.error("password reset code %s not sent: no SMS provider configured", code_id)
        return False
    template = (
        DEFAULT_TEXTS.get(("verification_code", language))
        or DEFAULT_TEXTS[("verification_code", settings.LANGUAGE_CODE)]
    )
    try:
        provider.send(
            to=Recipient(user_id=user.pk, phone=phone),
            text=template.format(code=code, minutes=minutes),
            reference=f"password-reset-{code_id}",
            kind="verification_code",
            params={"code": code, "minutes": minutes},
        )
    except ProviderError:
        logger.exception("password reset code %s could not be sent", code_id)
        return False
    return True
