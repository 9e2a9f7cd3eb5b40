"""Celery tasks: thin wrappers over services."""

from __future__ import annotations

import logging

from celery import shared_task

from repayments.services.audit import audit_verify

logger = logging.getLogger(__name__)


@shared_task(name="repayments.tasks.verify_audit_chain", acks_late=True)
def verify_audit_chain() -> bool:
    """Nightly: report (at ERROR, which alerting watches) if the audit chain is broken."""
    problem = audit_verify()
    if problem:
        logger.error("audit chain broken at entry %s: %s", problem.entry_id, problem.reason)
        return False
    return True
