"""Sending claimed notices in batches, each only while what it says is still true.

A batch costs a fixed number of queries, whatever its size:

1. take: lock the rows still claimed for this sender (fenced by the claim's
   lease), read the subjects' current states (one query per subject type),
   supersede the notices no longer true, with the reason, and renew the lease
   of the rest;
2. one query each for the templates, the borrowers' channel orders and the
   in-app deliveries already recorded;
3. each notice goes through its channels (provider calls are per notice);
4. finish: one transaction records the deliveries and each notice's outcome,
   only for rows still ours (a receipt may have reopened one meanwhile);
5. the delivered notices' subjects are read again (one query per type): a state
   that moved to a confirmed one while we were sending is followed by a correction.

A batch that runs longer than ``CHECKPOINT_SECONDS`` (slow providers) finishes
what it has sent and takes the rest again, so no notice goes out on a state read
more than about that long before, a working sender's lease never runs out, and a
worker that dies loses at most that much of its record of what it sent.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction

from notifications import metrics
from notifications.models import (
    Delivery,
    DeliveryChannel,
    DeliveryStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
)
from notifications.preferences import channel_orders
from notifications.providers.base import Provider, ProviderError, Recipient
from notifications.services.outbox import CLAIM_LEASE, notice_enqueue
from notifications.services.rendering import TemplateBook
from notifications.subjects import current_states, subject_type

logger = logging.getLogger(__name__)

RETRY_BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10))
CHECKPOINT_SECONDS = 1.0
OUTCOME_FIELDS = [
    "body",
    "tries",
    "status",
    "delivered_at",
    "status_reason",
    "not_before",
    "claimed_until",
]

ProviderFactory = Callable[[str], Provider | None]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Dispatched:
    status: str
    channel: str = ""


def notice_dispatch(
    *, notice_id: int, now: datetime, providers: ProviderFactory | None = None
) -> Dispatched:
    """Send one claimed notice if what it says is still true. Safe to run twice.

    :raises Notice.DoesNotExist: there is no such notice.
    """
    results = notices_send(notice_ids=[notice_id], clock=lambda: now, providers=providers)
    if notice_id not in results:
        raise Notice.DoesNotExist(f"notice {notice_id}")
    return results[notice_id]


def notices_send(
    *,
    notice_ids: Sequence[int],
    clock: Clock,
    providers: ProviderFactory | None = None,
    lease_until: datetime | None = None,
) -> dict[int, Dispatched]:
    """Send the claimed notices that are still true; what became of each, by id.

    ``lease_until`` is the claim the ids came with: a row claimed again since
    (that claim expired) is someone else's now and is left alone. Without it,
    any notice being sent is taken (a direct call). Ids that no longer exist
    are left out of the answer. Safe to run twice, and concurrently.
    """
    results: dict[int, Dispatched] = {}
    todo, lease = _take(
        list(dict.fromkeys(notice_ids)), token=lease_until, now=clock(), results=results
    )
    sender = _Sender(todo, providers=providers or default_provider, clock=clock)
    while todo:
        sent = _Round()
        try:
            todo = sender.send_until(todo, sent, deadline=time.monotonic() + CHECKPOINT_SECONDS)
        finally:
            # Even when a provider raised something unexpected: what did go out is recorded.
            delivered = _finish(sent, lease=lease, now=clock(), results=results)
        _correct_contradicted(delivered, now=clock())
        if todo:
            todo, lease = _take([n.pk for n in todo], token=lease, now=clock(), results=results)
    return results


def _take(
    ids: list[int], *, token: datetime | None, now: datetime, results: dict[int, Dispatched]
) -> tuple[list[Notice], datetime]:
    """Lock what is still ours, supersede what is no longer true, renew the lease."""
    lease_until = now + CLAIM_LEASE
    with transaction.atomic():
        owned = (
            Notice.objects.select_for_update(of=("self",))
            .select_related("recipient")
            .filter(pk__in=ids, status=NoticeStatus.SENDING)
            .order_by("pk")
        )
        if token is not None:
            owned = owned.filter(claimed_until=token)
        notices = list(owned)
        stale = _stale_reasons(notices)
        by_reason: dict[str, list[int]] = defaultdict(list)
        for pk, reason in stale.items():
            by_reason[reason].append(pk)
        for reason, pks in by_reason.items():
            Notice.objects.filter(pk__in=pks).update(
                status=NoticeStatus.SUPERSEDED, status_reason=reason[:200], claimed_until=None
            )
        live = [notice for notice in notices if notice.pk not in stale]
        if live:
            Notice.objects.filter(pk__in=[notice.pk for notice in live]).update(
                claimed_until=lease_until
            )
    for notice in notices:
        if notice.pk in stale:
            results[notice.pk] = Dispatched(NoticeStatus.SUPERSEDED)
            metrics.notices_superseded.labels(notice.kind).inc()
    _note_others(set(ids) - {notice.pk for notice in notices}, results)
    return live, lease_until


def _stale_reasons(notices: Iterable[Notice]) -> dict[int, str]:
    """Notices whose subject is no longer in the state they announce, with the reason."""
    reasons: dict[int, str] = {}
    for type_name, group in _by_subject_type(notices).items():
        subject = subject_type(type_name)
        if subject is None:
            continue
        states = current_states(subject, {notice.subject_id for notice in group})
        for notice in group:
            current = states[notice.subject_id]
            if current != notice.announced_state:
                reasons[notice.pk] = f"{type_name} is now {current}"
    return reasons


def _by_subject_type(notices: Iterable[Notice]) -> dict[str, list[Notice]]:
    grouped: dict[str, list[Notice]] = defaultdict(list)
    for notice in notices:
        if notice.announced_state:
            grouped[notice.subject_type].append(notice)
    return grouped


def _note_others(ids: set[int], results: dict[int, Dispatched]) -> None:
    """Ids this sender does not hold (finished elsewhere, reopened): report their status."""
    if ids:
        for pk, status in Notice.objects.filter(pk__in=ids).values_list("pk", "status"):
            results[pk] = Dispatched(status)


@dataclass
class _Outcome:
    notice: Notice
    text: str
    channel: str  # the channel that took it; "" when every channel failed
    at: datetime


@dataclass
class _Round:
    """What one stretch of sending did, waiting to be written in one transaction."""

    outcomes: list[_Outcome] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def flush_deliveries(self) -> None:
        if self.deliveries:
            Delivery.objects.bulk_create(self.deliveries)
            self.deliveries = []


class _Sender:
    """Puts notices in front of borrowers, with what the batch needs read once."""

    def __init__(self, notices: list[Notice], *, providers: ProviderFactory, clock: Clock) -> None:
        self.providers = providers
        self.clock = clock
        self.texts = TemplateBook.for_notices(notices)
        self.orders = channel_orders(user_ids={notice.recipient_id for notice in notices})
        self.in_inbox = (
            set(
                Delivery.objects.filter(
                    notice_id__in=[notice.pk for notice in notices], channel=DeliveryChannel.IN_APP
                ).values_list("notice_id", flat=True)
            )
            if notices
            else set()
        )

    def send_until(self, todo: list[Notice], sent: _Round, *, deadline: float) -> list[Notice]:
        """Send notices until the deadline (at least one); the ones left over."""
        position = 0
        while position < len(todo) and (position == 0 or time.monotonic() < deadline):
            sent.outcomes.append(self._send(todo[position], sent))
            position += 1
        return todo[position:]

    def _send(self, notice: Notice, sent: _Round) -> _Outcome:
        """Record it in the inbox, then try each external channel in the borrower's order."""
        text = self.texts.render(notice)
        now = self.clock()
        if notice.pk not in self.in_inbox:
            # The inbox is the notice row itself: it cannot fail, and is recorded once.
            sent.deliveries.append(
                Delivery(
                    notice=notice,
                    channel=DeliveryChannel.IN_APP,
                    provider="inbox",
                    status=DeliveryStatus.DELIVERED,
                    attempted_at=now,
                    receipt_at=now,
                )
            )
            self.in_inbox.add(notice.pk)
        recipient = Recipient(user_id=notice.recipient_id, phone=notice.recipient.phone or "")
        for channel in self.orders[notice.recipient_id]:
            provider = self.providers(channel)
            if provider is None:
                continue
            try:
                result = provider.send(
                    to=recipient,
                    text=text,
                    reference=str(notice.pk),
                    kind=notice.kind,
                    params=notice.params,
                )
            except ProviderError as exc:
                sent.deliveries.append(
                    Delivery(
                        notice=notice,
                        channel=channel,
                        provider=provider.name,
                        status=DeliveryStatus.FAILED,
                        error=str(exc)[:200],
                        attempted_at=now,
                    )
                )
                logger.info("notice %s: %s failed (%s), trying the next", notice.pk, channel, exc)
                continue
            sent.deliveries.append(
                Delivery(
                    notice=notice,
                    channel=channel,
                    provider=provider.name,
                    status=DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.SENT,
                    provider_message_id=result.message_id[:100],
                    attempted_at=now,
                    receipt_at=now if result.delivered else None,
                )
            )
            if not result.delivered:
                # Its receipt may arrive before the batch ends: the row must be there.
                sent.flush_deliveries()
            return _Outcome(notice, text, str(channel), self.clock())
        return _Outcome(notice, text, "", now)


def _finish(
    sent: _Round, *, lease: datetime, now: datetime, results: dict[int, Dispatched]
) -> list[Notice]:
    """Write the round's deliveries and outcomes in one transaction; the delivered notices."""
    ids = [outcome.notice.pk for outcome in sent.outcomes]
    with transaction.atomic():
        sent.flush_deliveries()
        ours = set(
            Notice.objects.select_for_update()
            .filter(pk__in=ids, status=NoticeStatus.SENDING, claimed_until=lease)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        finished = [
            _settle(outcome, now=now) for outcome in sent.outcomes if outcome.notice.pk in ours
        ]
        if finished:
            _write_outcomes(finished)
    _note_others(set(ids) - ours, results)  # e.g. a receipt reopened it: it is pending again
    delivered = []
    for outcome in sent.outcomes:
        notice = outcome.notice
        if notice.pk not in ours:
            continue
        results[notice.pk] = Dispatched(notice.status, outcome.channel)
        if outcome.channel:
            metrics.observe_delivery(notice, outcome.channel)
            delivered.append(notice)
        else:
            metrics.notices_failed.labels(notice.kind).inc()
    return delivered


def _write_outcomes(notices: list[Notice]) -> None:
    """One UPDATE for the whole round.

    On PostgreSQL the values travel as arrays joined by id: Django's
    ``bulk_update`` builds a CASE per field and row, and that Python work
    cost more than everything else in a batch (8 ms a notice, measured).
    """
    if connection.vendor != "postgresql":
        Notice.objects.bulk_update(notices, OUTCOME_FIELDS)
        return
    column = {field.name: field.column for field in Notice._meta.concrete_fields}
    arrays = {
        "body": "text[]",
        "status": "text[]",
        "tries": "int[]",
        "delivered_at": "timestamptz[]",
        "status_reason": "text[]",
        "not_before": "timestamptz[]",
    }
    assignments = ", ".join(f"{column[name]} = v.{name}" for name in arrays)
    unnest = ", ".join(f"%s::{kind}" for kind in arrays.values())
    # Only names from the model's own metadata are formatted in; values are parameters.
    sql = (
        f"UPDATE {Notice._meta.db_table} AS n SET {assignments}, "  # noqa: S608
        f"{column['claimed_until']} = NULL "
        f"FROM unnest(%s::bigint[], {unnest}) AS v(id, {', '.join(arrays)}) "
        "WHERE n.id = v.id"
    )
    values = [[notice.pk for notice in notices]]
    values += [[getattr(notice, name) for notice in notices] for name in arrays]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def _settle(outcome: _Outcome, *, now: datetime) -> Notice:
    notice = outcome.notice
    notice.body = outcome.text
    notice.tries += 1
    notice.claimed_until = None
    if outcome.channel:
        notice.status = NoticeStatus.DELIVERED
        notice.delivered_at = outcome.at
        notice.status_reason = ""
    elif notice.tries > len(RETRY_BACKOFF):
        notice.status = NoticeStatus.FAILED
        notice.status_reason = "every channel failed"
    else:
        notice.status = NoticeStatus.PENDING
        notice.not_before = now + RETRY_BACKOFF[notice.tries - 1]
    return notice


def _correct_contradicted(delivered: list[Notice], *, now: datetime) -> None:
    """The state moved while we were sending: put the record straight."""
    for type_name, group in _by_subject_type(delivered).items():
        subject = subject_type(type_name)
        if subject is None or not subject.confirmed_states:
            continue
        states = current_states(subject, {notice.subject_id for notice in group})
        for notice in group:
            current = states[notice.subject_id]
            if current != notice.announced_state and current in subject.confirmed_states:
                _enqueue_correction(notice, current, now=now)


def _enqueue_correction(notice: Notice, current: str, *, now: datetime) -> None:
    subject = subject_type(notice.subject_type)
    assert subject is not None  # checked by the caller
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
