"""Celery tasks: thin wrappers over services."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from repayments.channels.base import ChannelError, ChannelOutcomeUnknown, ChannelUnavailable
from repayments.models import Channel
from repayments.services.audit import audit_verify
from repayments.services.autodebit import (
    auto_debit_claim,
    auto_debit_execute,
    auto_debit_execute_many,
    auto_debit_recover_stale,
    auto_debit_resume_declined,
    auto_debit_schedule,
)
from repayments.services.callbacks import (
    callback_process,
    callbacks_due_for_sweep,
    callbacks_process_batch,
)
from repayments.services.janitor import janitor_check, janitor_check_many, janitor_claim
from repayments.services.password_reset import password_reset_send, password_reset_unsent
from repayments.services.reconciliation import reconcile_channel_day
from repayments.services.reminders import reminders_enqueue
from repayments.services.routing import duplicates_refund

logger = logging.getLogger(__name__)
# Claimed rows handed to one task: enough to share reads and commits (and, for
# withholding, one batch file per task), few enough that a redelivered task repeats
# little (a redelivered debit finds its attempt and is never sent twice).
DISPATCH_CHUNK = 200


@shared_task(name="repayments.tasks.verify_audit_chain", acks_late=True)
def verify_audit_chain() -> bool:
    """Nightly: report (at ERROR, which alerting watches) if the audit chain is broken."""
    problem = audit_verify()
    if problem:
        logger.error("audit chain broken at entry %s: %s", problem.entry_id, problem.reason)
        return False
    return True


@shared_task(name="repayments.tasks.auto_debit_schedule_today", acks_late=True)
def auto_debit_schedule_today() -> int:
    now = timezone.now()
    return auto_debit_schedule(run_date=timezone.localdate(now), now=now)


@shared_task(name="repayments.tasks.auto_debit_dispatch", acks_late=True)
def auto_debit_dispatch() -> int:
    """Claim due debits and fan them out; the rows, not the broker, hold the schedule."""
    now = timezone.now()
    auto_debit_recover_stale(now=now)
    auto_debit_resume_declined(now=now)
    ids = auto_debit_claim(now=now)
    for start in range(0, len(ids), DISPATCH_CHUNK):
        auto_debit_run_many.delay(debit_ids=ids[start : start + DISPATCH_CHUNK])
    return len(ids)


@shared_task(name="repayments.tasks.auto_debit_run", acks_late=True)
def auto_debit_run(*, debit_id: int) -> str:
    return auto_debit_execute(debit_id=debit_id, now=timezone.now()).status


@shared_task(name="repayments.tasks.auto_debit_run_many", acks_late=True)
def auto_debit_run_many(*, debit_ids: list[int]) -> int:
    """Claimed rows, a chunk per task: their reads and commits are shared."""
    return len(auto_debit_execute_many(debit_ids=debit_ids, now=timezone.now()))


@shared_task(name="repayments.tasks.refund_duplicates", acks_late=True)
def refund_duplicates() -> int:
    """Refund attempts that took money for an already-paid payment (rule 4)."""
    return duplicates_refund(now=timezone.now())


@shared_task(
    name="repayments.tasks.process_callback",
    acks_late=True,
    autoretry_for=(ChannelUnavailable, ChannelOutcomeUnknown),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=10,
)
def process_callback(*, record_id: int) -> str:
    """Apply one stored callback; the row, not this message, is the source of truth.

    Then drain what else waits, a batch per transaction: when callbacks arrive
    faster than one at a time can keep up, a few tasks do the work of many, and
    the messages of rows they finished find nothing left to do.
    """
    now = timezone.now()
    status = callback_process(record_id=record_id, now=now)  # raises for a retry
    callbacks_process_batch(now=now)
    return status


@shared_task(name="repayments.tasks.sweep_callbacks", acks_late=True)
def sweep_callbacks() -> int:
    """Re-enqueue callbacks stored but never processed (lost message, dead worker)."""
    ids = callbacks_due_for_sweep(now=timezone.now())
    for record_id in ids:
        process_callback.delay(record_id=record_id)
    if ids:
        logger.warning("re-enqueued %d unprocessed callbacks", len(ids))
    return len(ids)


@shared_task(name="repayments.tasks.janitor_dispatch", acks_late=True)
def janitor_dispatch() -> int:
    """Claim attempts whose status query is due and hand each to a worker."""
    ids = janitor_claim(now=timezone.now())
    for start in range(0, len(ids), DISPATCH_CHUNK):
        janitor_query_many.delay(attempt_ids=ids[start : start + DISPATCH_CHUNK])
    return len(ids)


@shared_task(name="repayments.tasks.janitor_query", acks_late=True)
def janitor_query(*, attempt_id: int) -> str:
    return janitor_check(attempt_id=attempt_id, now=timezone.now())


@shared_task(name="repayments.tasks.janitor_query_many", acks_late=True)
def janitor_query_many(*, attempt_ids: list[int]) -> int:
    """Claimed attempts, a chunk per task: each asked alone (or with one query per batch
    it went out in), the answers applied in one transaction."""
    return len(janitor_check_many(attempt_ids=attempt_ids, now=timezone.now()))


@shared_task(name="repayments.tasks.send_reminders", acks_late=True)
def send_reminders() -> int:
    """Daily: due-date reminders (3 and 1 days before) and overdue alerts."""
    now = timezone.now()
    return reminders_enqueue(today=timezone.localdate(now), now=now)


@shared_task(name="repayments.tasks.reconcile_yesterday", acks_late=True)
def reconcile_yesterday() -> None:
    """Daily: one reconciliation per channel for yesterday's statement (Beijing days)."""
    for channel in Channel.values:
        reconcile_channel.delay(channel=channel)


@shared_task(
    name="repayments.tasks.reconcile_channel",
    acks_late=True,
    autoretry_for=(ChannelError,),
    retry_backoff=600,
    retry_backoff_max=3600,
    max_retries=8,
)
def reconcile_channel(*, channel: str) -> int:
    """A statement not published yet (Alipay's appear after 10:00) is retried later."""
    now = timezone.now()
    day = timezone.localdate(now) - timedelta(days=1)
    return reconcile_channel_day(channel=channel, day=day, now=now).discrepancy_count


@shared_task(name="repayments.tasks.send_password_reset_code", acks_late=True)
def send_password_reset_code(*, code_id: int, language: str) -> bool:
    return password_reset_send(code_id=code_id, now=timezone.now(), language=language)


@shared_task(name="repayments.tasks.sweep_password_reset_codes", acks_late=True)
def sweep_password_reset_codes() -> int:
    """Text the codes whose task was lost or whose SMS failed (in Chinese, the default:
    the page's language went with the lost task)."""
    now = timezone.now()
    return sum(password_reset_send(code_id=i, now=now) for i in password_reset_unsent(now=now))
