"""The notice outbox: enqueue with the state change, dispatch only what is still true.

Rule 5 of the design, in four mechanisms:

1. :func:`notice_enqueue` runs inside the caller's transaction, so a notice
   exists exactly when the state change it announces committed.
2. :func:`notice_dispatch` re-reads the subject before sending; a notice whose
   state no longer holds is superseded, with the reason. Failure notices are
   enqueued with a settle window, so a quick recovery supersedes them unsent.
3. After a send, the state is read again: if it moved to a confirmed state
   meanwhile (the race between check and send), a correction is enqueued.
   :func:`notice_enqueue` also corrects at once when a success arrives after a
   failure notice went out.
4. A live notice is unique per (recipient, dedupe key), and only the claimer
   holding the row can mark it delivered: a retried task or a duplicated
   trigger never sends twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from notifications import metrics
from notifications.models import (
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    NoticeTemplate,
    NotificationPreference,
)
from notifications.providers.base import Provider, ProviderError, Recipient
from notifications.subjects import subject_type
from notifications.texts import DEFAULT_TEXTS

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=2)
RETRY_BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))
DEFAULT_CHANNEL_ORDER = (DeliveryChannel.SMS, DeliveryChannel.PUSH)

ProviderFactory = Callable[[str], Provider | None]


def settle_window() -> timedelta:
    return timedelta(seconds=settings.NOTICE_FAILURE_SETTLE_SECONDS)


def notice_enqueue(
    *,
    recipient_id: int,
    kind: NoticeKind,
    subject_type_name: str,
    subject_id: int,
    announced_state: str,
    episode: str,
    params: Mapping[str, Any],
    now: datetime,
    delay: timedelta = timedelta(0),
    corrects: Notice | None = None,
) -> Notice | None:
    """Write a notice in the caller's transaction; None if an equal one is already live.

    ``episode`` separates repeated visits to one state (e.g. a second attempt
    failing after a fallback) so each gets its notice, while duplicates of one
    visit collapse into one.
    """
    language = (
        NotificationPreference.objects.filter(user_id=recipient_id)
        .values_list("language", flat=True)
        .first()
    ) or settings.LANGUAGE_CODE
    key = f"{subject_type_name}:{subject_id}:{episode}:{kind}:{announced_state}"
    if corrects is not None:
        key = f"correction:{corrects.pk}"
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                recipient_id=recipient_id,
                kind=kind,
                subject_type=subject_type_name,
                subject_id=subject_id,
                announced_state=announced_state,
                dedupe_key=key[:120],
                params=dict(params),
                language=language,
                not_before=now + delay,
                corrects=corrects,
                state_changed_at=now,
                created_at=now,
            )
    except IntegrityError:
        return None  # the same notice is already pending, being sent or delivered
    metrics.notices_created.labels(kind).inc()
    return notice


def contradicted_notices(*, subject_type_name: str, subject_id: int, state: str) -> list[Notice]:
    """Delivered notices about the subject that announce another state and have no
    correction yet (e.g. a failure message about a payment that then succeeded)."""
    return list(
        Notice.objects.filter(
            subject_type=subject_type_name,
            subject_id=subject_id,
            status=NoticeStatus.DELIVERED,
            correction__isnull=True,
        )
        .exclude(announced_state=state)
        .exclude(announced_state="")
        .exclude(kind=NoticeKind.CORRECTION)
    )


def notices_claim(*, now: datetime, limit: int = 200) -> list[int]:
    """Claim due notices for one dispatcher, leased so a dead one's claims come back."""
    with transaction.atomic():
        due = Notice.objects.select_for_update(skip_locked=True).filter(
            Q(status=NoticeStatus.PENDING, not_before__lte=now)
            | Q(status=NoticeStatus.SENDING, claimed_until__lt=now)
        )
        ids = list(due.order_by("not_before").values_list("pk", flat=True)[:limit])
        Notice.objects.filter(pk__in=ids).update(
            status=NoticeStatus.SENDING, claimed_until=now + CLAIM_LEASE
        )
    return ids


@dataclass(frozen=True)
class Dispatched:
    status: str
    channel: str = ""


def notice_dispatch(
    *, notice_id: int, now: datetime, providers: ProviderFactory | None = None
) -> Dispatched:
    """Send one claimed notice if what it says is still true. Safe to run twice."""
    providers = providers or default_provider
    notice = Notice.objects.select_related("recipient").get(pk=notice_id)
    if notice.status != NoticeStatus.SENDING:
        return Dispatched(notice.status)
    subject = subject_type(notice.subject_type)
    if notice.announced_state and subject is not None:
        current = subject.read_state(notice.subject_id)
        if current != notice.announced_state:
            _supersede(notice, f"{notice.subject_type} is now {current}", now=now)
            return Dispatched(NoticeStatus.SUPERSEDED)
    text = render(notice)
    delivered_by = _deliver(notice, text, now=now, providers=providers)
    with transaction.atomic():
        current_row = Notice.objects.select_for_update().get(pk=notice.pk)
        if current_row.status != NoticeStatus.SENDING:
            return Dispatched(current_row.status)  # another dispatcher finished it
        current_row.body = text
        current_row.tries += 1
        if delivered_by:
            current_row.status = NoticeStatus.DELIVERED
            current_row.delivered_at = now
            current_row.status_reason = ""
        elif current_row.tries > len(RETRY_BACKOFF):
            current_row.status = NoticeStatus.FAILED
            current_row.status_reason = "every channel failed"
        else:
            current_row.status = NoticeStatus.PENDING
            current_row.not_before = now + RETRY_BACKOFF[current_row.tries - 1]
        current_row.claimed_until = None
        current_row.save(
            update_fields=[
                "body",
                "tries",
                "status",
                "delivered_at",
                "status_reason",
                "not_before",
                "claimed_until",
            ]
        )
    if delivered_by:
        metrics.observe_delivery(current_row, delivered_by)
        _correct_if_contradicted(current_row, now=now)
    else:
        metrics.notices_failed.labels(notice.kind).inc()
    return Dispatched(current_row.status, delivered_by)


def notices_in_inbox(*, user_id: int) -> list[Notice]:
    """The borrower's in-app inbox: every notice that went out, newest first."""
    return list(
        Notice.objects.filter(
            recipient_id=user_id, status__in=[NoticeStatus.DELIVERED, NoticeStatus.FAILED]
        ).prefetch_related("deliveries")
    )


def render(notice: Notice, channel: str = DeliveryChannel.SMS) -> str:
    template = (
        NoticeTemplate.objects.filter(kind=notice.kind, language=notice.language, channel=channel)
        .values_list("text", flat=True)
        .first()
    )
    text = (
        template
        or DEFAULT_TEXTS.get((notice.kind, notice.language))
        or DEFAULT_TEXTS.get((notice.kind, "zh-hans"), "")
    )
    return text.format_map(_Blank(notice.params))


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def _deliver(notice: Notice, text: str, *, now: datetime, providers: ProviderFactory) -> str:
    """Try each external channel in the borrower's order; returns the one that took it."""
    recipient = Recipient(user_id=notice.recipient_id, phone=notice.recipient.phone or "")
    if not notice.deliveries.filter(channel=DeliveryChannel.IN_APP).exists():
        # The inbox is the notice row itself: it cannot fail, and is recorded once.
        Delivery.objects.create(
            notice=notice,
            channel=DeliveryChannel.IN_APP,
            provider="inbox",
            status=DeliveryStatus.DELIVERED,
            attempted_at=now,
            receipt_at=now,
        )
    for channel in _channel_order(notice.recipient_id):
        provider = providers(channel)
        if provider is None:
            continue
        try:
            sent = provider.send(
                to=recipient,
                text=text,
                reference=str(notice.pk),
                kind=notice.kind,
                params=notice.params,
            )
        except ProviderError as exc:
            Delivery.objects.create(
                notice=notice,
                channel=channel,
                provider=provider.name,
                status=DeliveryStatus.FAILED,
                error=str(exc)[:200],
                attempted_at=now,
            )
            logger.info("notice %s: %s failed (%s), trying the next", notice.pk, channel, exc)
            continue
        Delivery.objects.create(
            notice=notice,
            channel=channel,
            provider=provider.name,
            status=DeliveryStatus.DELIVERED if sent.delivered else DeliveryStatus.SENT,
            provider_message_id=sent.message_id[:100],
            attempted_at=now,
            receipt_at=now if sent.delivered else None,
        )
        return str(channel)
    return ""


def _channel_order(user_id: int) -> list[str]:
    stored = (
        NotificationPreference.objects.filter(user_id=user_id)
        .values_list("channel_order", flat=True)
        .first()
    )
    order = [c for c in (stored or []) if c in (DeliveryChannel.SMS, DeliveryChannel.PUSH)]
    return order or [str(c) for c in DEFAULT_CHANNEL_ORDER]


def _supersede(notice: Notice, reason: str, *, now: datetime) -> None:
    updated = Notice.objects.filter(pk=notice.pk, status=NoticeStatus.SENDING).update(
        status=NoticeStatus.SUPERSEDED, status_reason=reason[:200], claimed_until=None
    )
    if updated:
        metrics.notices_superseded.labels(notice.kind).inc()


def _correct_if_contradicted(notice: Notice, *, now: datetime) -> None:
    """The state moved while we were sending: put the record straight."""
    subject = subject_type(notice.subject_type)
    if subject is None or not notice.announced_state:
        return
    current = subject.read_state(notice.subject_id)
    if current == notice.announced_state or current not in subject.confirmed_states:
        return
    # A failure message gets an explicit correction; any other stale word (say
    # "being confirmed" landing after "succeeded") is followed by the current news.
    is_failure = notice.kind == NoticeKind.PAYMENT_FAILED
    with transaction.atomic():
        correction = notice_enqueue(
            recipient_id=notice.recipient_id,
            kind=NoticeKind.CORRECTION if is_failure else NoticeKind.PAYMENT_SUCCEEDED,
            subject_type_name=notice.subject_type,
            subject_id=notice.subject_id,
            announced_state=current,
            episode=f"after-{notice.pk}",
            params={**notice.params, **subject.describe(notice.subject_id)},
            now=now,
            corrects=notice if is_failure else None,
        )
    if correction is not None:
        metrics.notices_corrected.labels(notice.kind).inc()


_default_providers: dict[str, Provider | None] = {}


def default_provider(channel: str) -> Provider | None:
    """The configured provider for a channel, built once per process."""
    if channel not in _default_providers:
        from notifications.providers.registry import provider_from_settings

        _default_providers[channel] = provider_from_settings(channel)
    return _default_providers[channel]
