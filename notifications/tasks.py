"""Celery tasks for notices: thin wrappers over the outbox services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from notifications.services import notice_dispatch, notices_claim

# Notices per send task: large enough to amortise a task's overhead, small enough
# that one slow provider call does not hold many notices back.
SEND_BATCH = 20


@shared_task(name="notifications.tasks.dispatch_notices", acks_late=True)
def dispatch_notices() -> int:
    """Claim due notices (and those a dead dispatcher left) and fan them out in batches."""
    ids = notices_claim(now=timezone.now(), limit=1000)
    for start in range(0, len(ids), SEND_BATCH):
        send_notices.delay(notice_ids=ids[start : start + SEND_BATCH])
    return len(ids)


@shared_task(name="notifications.tasks.send_notices", acks_late=True)
def send_notices(*, notice_ids: list[int]) -> int:
    """Send claimed notices; a notice already finished by another worker is skipped."""
    delivered = 0
    for notice_id in notice_ids:
        result = notice_dispatch(notice_id=notice_id, now=timezone.now())
        delivered += result.status == "delivered"
    return delivered
