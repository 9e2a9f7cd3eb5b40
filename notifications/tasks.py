"""Celery tasks for notices: thin wrappers over the outbox services."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.utils import timezone

from notifications.models import NoticeStatus
from notifications.services import notices_claim_leased, notices_send

# Notices claimed per dispatcher run and sent per task. A send task costs a fixed
# number of queries whatever its size, so larger batches spread the task's own
# cost thinner; a batch still re-checks states and records what it sent every
# second (see notifications.services.dispatch), so size does not make it stale.
CLAIM_LIMIT = 1000
SEND_BATCH = 50


@shared_task(name="notifications.tasks.dispatch_notices", acks_late=True)
def dispatch_notices() -> int:
    """Claim due notices (and those a dead dispatcher left) and fan them out in batches."""
    claim = notices_claim_leased(now=timezone.now(), limit=CLAIM_LIMIT)
    lease_until = claim.lease_until.isoformat()
    for start in range(0, len(claim.ids), SEND_BATCH):
        send_notices.delay(
            notice_ids=claim.ids[start : start + SEND_BATCH], lease_until=lease_until
        )
    return len(claim.ids)


@shared_task(name="notifications.tasks.send_notices", acks_late=True)
def send_notices(*, notice_ids: list[int], lease_until: str | None = None) -> int:
    """Send claimed notices; one claimed again since (its lease ran out) is skipped."""
    results = notices_send(
        notice_ids=notice_ids,
        clock=timezone.now,
        lease_until=datetime.fromisoformat(lease_until) if lease_until else None,
    )
    return sum(result.status == NoticeStatus.DELIVERED for result in results.values())
