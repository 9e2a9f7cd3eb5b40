"""Celery tasks for notices: thin wrappers over the outbox services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from notifications.services import notice_dispatch, notices_claim


@shared_task(name="notifications.tasks.dispatch_notices", acks_late=True)
def dispatch_notices() -> int:
    """Claim due notices (and those a dead dispatcher left) and send each in a task."""
    ids = notices_claim(now=timezone.now())
    for notice_id in ids:
        send_notice.delay(notice_id=notice_id)
    return len(ids)


@shared_task(name="notifications.tasks.send_notice", acks_late=True)
def send_notice(*, notice_id: int) -> str:
    return notice_dispatch(notice_id=notice_id, now=timezone.now()).status
