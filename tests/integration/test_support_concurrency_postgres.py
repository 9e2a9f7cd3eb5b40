"""Maker-checker under real concurrency: two supervisors approving one refund request at
the same moment send one refund (PostgreSQL row locks, real transactions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from repayments.domain.states import AttemptStatus
from repayments.models import (
    AuditEntry,
    EventKind,
    Loan,
    PaymentEvent,
    RefundRequestStatus,
    Role,
    User,
)
from repayments.services.support import (
    RefundAlreadyDecided,
    refund_request_create,
    refund_request_decide,
)
from repayments.services.users import roles_ensure, staff_create
from tests.integration.fake_channel import FakeChannels
from tests.integration.helpers import open_attempt, report, retry_with_alipay
from tests.integration.test_concurrency_postgres import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PASSWORD = "Checker-Maker-2026"


def test_two_supervisors_approving_at_once_refund_the_duplicate_once(
    make_loan: Callable[..., Loan],
) -> None:
    roles_ensure()
    now = timezone.now() - timedelta(hours=1)

    def staff(name: str, role: Role) -> User:
        return staff_create(username=name, password=PASSWORD, role=role, full_name=name, now=now)

    agent = staff("agent", Role.SUPPORT_AGENT)
    supervisors = [staff(f"supervisor{n}", Role.SUPPORT_SUPERVISOR) for n in (1, 2)]
    payment, first = open_attempt(make_loan(), "100.00", now)
    report(first, AttemptStatus.FAILED, now)
    second = retry_with_alipay(payment, now)
    report(second, AttemptStatus.SUCCEEDED, now)
    report(first, AttemptStatus.SUCCEEDED, now)  # the first charge arrives late: a duplicate
    first.refresh_from_db()
    channels = FakeChannels()
    request = refund_request_create(attempt=first, actor=agent, reason="charged twice", now=now)

    results = race(
        2,
        lambda n: refund_request_decide(
            request=request,
            actor=supervisors[n],
            approve=True,
            note="checked",
            now=now,
            channels=channels,
        ),
    )

    assert sum(isinstance(r, RefundAlreadyDecided) for r in results) == 1, results
    [decided] = [r for r in results if not isinstance(r, Exception)]
    assert decided.status == RefundRequestStatus.REFUNDED
    assert channels("unionpay").refunds == [first.out_trade_no]
    refunds = PaymentEvent.objects.filter(
        attempt=first, kind=EventKind.REFUND, data__succeeded=True
    )
    assert refunds.count() == 1
    assert AuditEntry.objects.filter(action="support.refund_approved").count() == 1
