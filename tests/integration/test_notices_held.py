"""Notices held to the end of a batch: written in one INSERT, duplicates still skipped,
nothing written when the batch fails or a savepoint inside it rolls back."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Notice, NoticeKind, NotificationPreference
from notifications.services import notice_enqueue, notices_held
from repayments.models import User

pytestmark = pytest.mark.django_db


def _enqueue(user: User, subject_id: int, **extra: Any) -> Notice | None:
    return notice_enqueue(
        recipient_id=user.pk,
        kind=NoticeKind.PAYMENT_SUCCEEDED,
        subject_type_name="payment",
        subject_id=subject_id,
        announced_state="succeeded",
        episode="1",
        params={"amount": "100.00"},
        now=timezone.now(),
        **extra,
    )


def _inserts(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "INSERT" in q["sql"]]


def test_held_notices_are_written_in_one_insert_when_the_block_ends(make_borrower) -> None:
    first, second = make_borrower(), make_borrower()
    NotificationPreference.objects.create(user=second, language="en")
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured, notices_held():
            held = [_enqueue(first, 1), _enqueue(second, 2)]
            assert Notice.objects.count() == 0
        assert len(_inserts(captured)) == 1
    assert all(notice is not None and notice.pk for notice in held)
    assert {n.recipient_id: n.language for n in Notice.objects.all()} == {
        first.pk: "zh-hans",
        second.pk: "en",
    }


def test_duplicates_are_skipped_in_the_block_and_against_live_notices(make_borrower) -> None:
    user = make_borrower()
    live = _enqueue(user, 1)
    assert live is not None
    with transaction.atomic(), notices_held():
        _enqueue(user, 1)  # equal to a live one
        twins = [_enqueue(user, 2), _enqueue(user, 2)]  # equal to each other
    assert Notice.objects.filter(subject_id=1).count() == 1
    assert Notice.objects.filter(subject_id=2).count() == 1
    assert [bool(twin and twin.pk) for twin in twins] == [True, False]


def test_a_failed_block_writes_no_notice(make_borrower) -> None:
    user = make_borrower()

    def failing_batch() -> None:
        with transaction.atomic(), notices_held():
            _enqueue(user, 1)
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert not Notice.objects.exists()


def test_inside_a_savepoint_a_notice_is_written_at_once_and_rolled_back_with_it(
    make_borrower,
) -> None:
    user = make_borrower()
    with transaction.atomic(), notices_held():
        try:
            with transaction.atomic():
                assert _enqueue(user, 1) is not None
                assert Notice.objects.count() == 1
                raise ValueError
        except ValueError:
            pass
        _enqueue(user, 2)
    assert list(Notice.objects.values_list("subject_id", flat=True)) == [2]


@pytest.mark.django_db(transaction=True)
def test_holding_needs_a_transaction() -> None:
    with pytest.raises(TransactionManagementError), notices_held():
        pass
