"""Writing notices with the state change, and claiming due ones for sending."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.transaction import TransactionManagementError

from notifications import metrics
from notifications.models import Notice, NoticeKind, NoticeStatus, NotificationPreference

# A claim not finished within its lease is due again: the sweeper for lost messages
# and dead workers. Senders renew it while they work (see ``dispatch``).
CLAIM_LEASE = timedelta(minutes=2)
# Claimed but unfinished notices, at most: enough to keep every worker busy, few
# enough that the last of them is sent well within its lease even on a slow day.
MAX_IN_FLIGHT = 2000


# Rows per INSERT when held notices are written together.
HELD_INSERT_CHUNK = 200


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

    Inside :func:`notices_held` the notice is returned unsaved and written when the
    block ends (skipped then if an equal one is live).

    ``episode`` separates repeated visits to one state (e.g. a second attempt
    failing after a fallback) so each gets its notice, while duplicates of one
    visit collapse into one.
    """
    key = f"{subject_type_name}:{subject_id}:{episode}:{kind}:{announced_state}"
    if corrects is not None:
        key = f"correction:{corrects.pk}"
    notice = Notice(
        recipient_id=recipient_id,
        kind=kind,
        subject_type=subject_type_name,
        subject_id=subject_id,
        announced_state=announced_state,
        dedupe_key=key[:120],
        params=dict(params),
        not_before=now + delay,
        corrects=corrects,
        state_changed_at=now,
        created_at=now,
    )
    held = _open_hold()
    if held is not None:
        held.notices.append(notice)  # written, or found a duplicate, when the block ends
        return notice
    if not _insert_unless_live([notice]):
        return None  # the same notice is already pending, being sent or delivered
    return notice


@dataclass
class _Hold:
    savepoints: int
    notices: list[Notice] = field(default_factory=list)


_holds = threading.local()


@contextmanager
def notices_held() -> Iterator[None]:
    """Hold :func:`notice_enqueue`'s notices in this block and write them together when
    it ends: one INSERT for all, each still skipped if an equal notice is live.

    For a batch of state changes in one transaction (the callback inbox). Inside it,
    :func:`notice_enqueue` returns its notice unsaved (no primary key until the end,
    and possibly a duplicate that will be skipped); inside a savepoint opened within
    the block it writes at once, so a rollback there undoes it. If the block raises,
    nothing held is written (the transaction is rolling back). Nested blocks join.

    :raises TransactionManagementError: outside a transaction.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise TransactionManagementError("notices_held() needs an open transaction")
    if getattr(_holds, "hold", None) is not None:
        yield
        return
    hold = _Hold(savepoints=_savepoints())
    _holds.hold = hold
    try:
        yield
    finally:
        _holds.hold = None
    for start in range(0, len(hold.notices), HELD_INSERT_CHUNK):
        _insert_unless_live(hold.notices[start : start + HELD_INSERT_CHUNK])


def _savepoints() -> int:
    """Savepoints open now; ``atomic(savepoint=False)`` adds none (see write_behind)."""
    return sum(sid is not None for sid in transaction.get_connection().savepoint_ids)


def _open_hold() -> _Hold | None:
    hold: _Hold | None = getattr(_holds, "hold", None)
    if hold is None or _savepoints() > hold.savepoints:
        return None
    return hold


def _insert_unless_live(notices: list[Notice]) -> list[Notice]:
    """INSERT the notices, each in its borrower's language, skipping any whose equal is
    live; returns those written.

    One INSERT whatever the number, on the state-change hot path: a live duplicate
    (the partial unique index) is skipped by ``ON CONFLICT DO NOTHING`` rather than
    raised and caught in a savepoint. For one notice the language is read inside the
    INSERT; for several, in one query before it. Written from the model's metadata
    because the ORM cannot express ``DO NOTHING ... RETURNING``; PostgreSQL and
    SQLite (3.35+) both accept it.
    """
    if not notices:
        return []
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta, preferences = Notice._meta, NotificationPreference._meta
    language = meta.get_field("language")
    key = meta.get_field("dedupe_key")
    recipient = meta.get_field("recipient")
    fields = [f for f in meta.concrete_fields if not f.primary_key and f is not language]
    # Names from the models' metadata, values as parameters.
    if len(notices) == 1:
        chosen = (
            f"COALESCE((SELECT {quote(preferences.get_field('language').column)} "  # noqa: S608
            f"FROM {quote(preferences.db_table)} "
            f"WHERE {quote(preferences.get_field('user').column)} = %s), %s)"
        )
        languages = [[notices[0].recipient_id, settings.LANGUAGE_CODE]]
    else:
        chosen = "%s"
        preferred = dict(
            NotificationPreference.objects.filter(
                user_id__in={n.recipient_id for n in notices}
            ).values_list("user_id", "language")
        )
        languages = [[preferred.get(n.recipient_id, settings.LANGUAGE_CODE)] for n in notices]
    row = f"({', '.join(['%s'] * len(fields))}, {chosen})"
    columns = ", ".join(quote(f.column) for f in [*fields, language])
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(notices))} ON CONFLICT DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, {quote(language.column)}, "
        f"{quote(recipient.column)}, {quote(key.column)}"
    )
    params: list[Any] = []
    for notice, chosen_params in zip(notices, languages, strict=True):
        params += [f.get_db_prep_save(f.pre_save(notice, add=True), connection) for f in fields]
        params += chosen_params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        written = {(recipient_id, dedupe): (pk, lang) for pk, lang, recipient_id, dedupe in cursor}
    inserted = []
    for notice in notices:  # two equal notices in one INSERT: the first is the one written
        found = written.pop((notice.recipient_id, notice.dedupe_key), None)
        if found is not None:
            notice.pk, notice.language = found
            notice._state.adding = False
            metrics.notices_created.labels(notice.kind).inc()
            inserted.append(notice)
    return inserted


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


@dataclass(frozen=True)
class Claim:
    ids: list[int]
    # The claim's lease, and its fencing token: a later claim of the same rows
    # (after this one expired) sets a later time, so a sender holding this one
    # can tell the rows are no longer its own.
    lease_until: datetime


def notices_claim_leased(
    *, now: datetime, limit: int = 200, max_in_flight: int = MAX_IN_FLIGHT
) -> Claim:
    """Claim due notices (and those whose claim expired) for sending, leased.

    Rows locked by another claimer are skipped, so two dispatchers never claim
    the same notice. At most ``max_in_flight`` notices are claimed and unfinished.
    """
    lease_until = now + CLAIM_LEASE
    with transaction.atomic():
        in_flight = Notice.objects.filter(
            status=NoticeStatus.SENDING, claimed_until__gte=now
        ).count()
        room = min(limit, max_in_flight - in_flight)
        if room <= 0:
            return Claim([], lease_until)
        # Claims that expired (a dispatcher died) first, then pending notices oldest
        # first: two reads that each stop at ``room`` rows on the (status, not_before)
        # index, where one read of either kind sorted the whole due backlog each time.
        claimable = Notice.objects.select_for_update(skip_locked=True).order_by("not_before")
        ids = list(
            claimable.filter(status=NoticeStatus.SENDING, claimed_until__lt=now).values_list(
                "pk", flat=True
            )[:room]
        )
        if len(ids) < room:
            pending = claimable.filter(status=NoticeStatus.PENDING, not_before__lte=now)
            ids += pending.values_list("pk", flat=True)[: room - len(ids)]
        if ids:
            Notice.objects.filter(pk__in=ids).update(
                status=NoticeStatus.SENDING, claimed_until=lease_until
            )
    return Claim(ids, lease_until)


def notices_claim(*, now: datetime, limit: int = 200) -> list[int]:
    """Claim due notices for one dispatcher, leased so a dead one's claims come back."""
    return notices_claim_leased(now=now, limit=limit).ids


def notices_in_inbox(*, user_id: int) -> list[Notice]:
    """The borrower's in-app inbox: every notice that went out, newest first."""
    return list(
        Notice.objects.filter(
            recipient_id=user_id, status__in=[NoticeStatus.DELIVERED, NoticeStatus.FAILED]
        ).prefetch_related("deliveries")
    )
