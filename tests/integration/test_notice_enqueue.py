"""``notice_enqueue`` in one statement: the borrower's language read in the INSERT,
a live duplicate skipped without an error (rule 5's outbox)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Notice, NoticeKind, NoticeStatus, NotificationPreference
from notifications.services import notice_enqueue

pytestmark = pytest.mark.django_db


def _enqueue(recipient_id: int, episode: str = "1", **extra: Any) -> Notice | None:
    return notice_enqueue(
        recipient_id=recipient_id,
        kind=NoticeKind.PAYMENT_SUCCEEDED,
        subject_type_name="payment",
        subject_id=42,
        announced_state="succeeded",
        episode=episode,
        params={"amount": "¥1.00"},
        now=timezone.now(),
        **extra,
    )


def test_the_notice_is_written_in_the_borrowers_language(make_borrower) -> None:
    chinese, english = make_borrower(), make_borrower()
    NotificationPreference.objects.update_or_create(user=english, defaults={"language": "en"})

    with CaptureQueriesContext(connection) as queries:
        notice = _enqueue(english.pk)
    assert len(queries.captured_queries) == 1
    assert notice is not None
    stored = Notice.objects.get(pk=notice.pk)
    assert (notice.language, stored.language) == ("en", "en")
    assert stored.params == {"amount": "¥1.00"}
    assert stored.status == NoticeStatus.PENDING
    other = _enqueue(chinese.pk)
    assert other is not None
    assert Notice.objects.get(pk=other.pk).language == settings.LANGUAGE_CODE


def test_a_live_duplicate_is_skipped_and_a_new_episode_is_not(make_borrower) -> None:
    borrower = make_borrower()
    first = _enqueue(borrower.pk, delay=timedelta(seconds=5))
    assert first is not None
    assert _enqueue(borrower.pk) is None  # same subject, state and episode: already live
    assert _enqueue(borrower.pk, episode="2") is not None
    Notice.objects.filter(pk=first.pk).update(status=NoticeStatus.SUPERSEDED)
    assert _enqueue(borrower.pk) is not None  # no longer live: a new one may go out
    assert Notice.objects.filter(recipient=borrower).count() == 3
