"""Every admin list page runs the same number of queries for 3 rows as for 55."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Notice, NoticeTemplate, NotificationPreference
from repayments.models import (
    Allocation,
    AuditEntry,
    BoundCard,
    Discrepancy,
    Dispute,
    InboundCallbackRecord,
    Installment,
    Loan,
    LoanProduct,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    ReconciliationRun,
    ScheduledDebit,
    SettlementQuote,
    User,
)
from repayments.services.audit import audit_append

pytestmark = pytest.mark.django_db

SMALL, LARGE = 3, 55
_serial = itertools.count(1)
NOW = timezone.now()


def _users(n: int, loan: Loan) -> list[User]:
    role, _ = Group.objects.get_or_create(name="borrower")
    users = User.objects.bulk_create(
        User(phone=f"137{next(_serial):08d}", full_name="B", password="!") for _ in range(n)
    )
    User.groups.through.objects.bulk_create(
        User.groups.through(user_id=u.pk, group_id=role.pk) for u in users
    )
    return users


def _products(n: int, loan: Loan) -> None:
    LoanProduct.objects.bulk_create(
        LoanProduct(
            code=f"p-{next(_serial)}",
            name="P",
            amortization_method="equal_installment",
            annual_rate_percent=Decimal("5"),
            term_months=12,
        )
        for _ in range(n)
    )


def _loans(n: int, loan: Loan) -> None:
    Loan.objects.bulk_create(
        Loan(
            contract_number=f"Q-{next(_serial)}",
            borrower=borrower,
            product_id=loan.product_id,
            vehicle="V",
            principal=Decimal("1000.00"),
            annual_rate_percent=Decimal("5"),
            term_months=12,
            amortization_method="equal_installment",
            start_date=date(2026, 1, 5),
            repayment_day=5,
        )
        for borrower in _users(n, loan)
    )


def _payments(n: int, loan: Loan) -> list[Payment]:
    return Payment.objects.bulk_create(
        Payment(
            loan=loan, borrower_id=loan.borrower_id, amount="10.00", created_at=NOW, updated_at=NOW
        )
        for _ in range(n)
    )


def _attempts(n: int, loan: Loan) -> None:
    PaymentAttempt.objects.bulk_create(
        PaymentAttempt(
            payment=p,
            loan=loan,
            channel="alipay",
            method_type="alipay_balance",
            out_trade_no=f"O{next(_serial)}",
            amount="10.00",
            status="closed",
            created_at=NOW,
            updated_at=NOW,
        )
        for p in _payments(n, loan)
    )


def _events(n: int, loan: Loan) -> None:
    PaymentEvent.objects.bulk_create(
        PaymentEvent(payment=p, kind="note", summary="s", occurred_at=NOW)
        for p in _payments(n, loan)
    )


def _allocations(n: int, loan: Loan) -> None:
    installment = Installment.objects.filter(loan=loan).first()
    Allocation.objects.bulk_create(
        Allocation(
            payment=p,
            installment=installment,
            component="principal",
            amount="10.00",
            value_date=date(2026, 1, 5),
            created_at=NOW,
        )
        for p in _payments(n, loan)
    )


def _quotes(n: int, loan: Loan) -> None:
    SettlementQuote.objects.bulk_create(
        SettlementQuote(
            loan=loan,
            settlement_date=date(2026, 1, 5),
            gross_total="1.00",
            credit_applied="0.00",
            total="1.00",
            computed_at=NOW,
            valid_until=NOW,
        )
        for _ in range(n)
    )


def _cards(n: int, loan: Loan) -> None:
    BoundCard.objects.bulk_create(
        BoundCard(
            borrower=borrower,
            channel="unionpay",
            card_token=f"t{next(_serial)}",
            card_masked="6222 **** **** 1234",
            bank_name="ICBC",
        )
        for borrower in _users(n, loan)
    )


def _debits(n: int, loan: Loan) -> None:
    installments = list(Installment.objects.filter(loan=loan))
    ScheduledDebit.objects.bulk_create(
        ScheduledDebit(
            installment=installments[i % len(installments)],
            loan=loan,
            run_date=date(2026, 1, 1) + timedelta(days=next(_serial)),
            next_try_at=NOW,
            updated_at=NOW,
        )
        for i in range(n)
    )


def _audit(n: int, loan: Loan) -> None:
    for i in range(n):
        audit_append(action="test.row", object_type="thing", object_id=i, now=NOW)


def _callbacks(n: int, loan: Loan) -> None:
    InboundCallbackRecord.objects.bulk_create(
        InboundCallbackRecord(channel="alipay", body=b"a=1", received_at=NOW) for _ in range(n)
    )


def _runs(n: int, loan: Loan) -> list[ReconciliationRun]:
    return ReconciliationRun.objects.bulk_create(
        ReconciliationRun(
            channel="alipay", day=date(2026, 1, 1) + timedelta(days=i), started_at=NOW
        )
        for i in range(n)
    )


def _discrepancies(n: int, loan: Loan) -> None:
    run = _runs(1, loan)[0]
    Discrepancy.objects.bulk_create(
        Discrepancy(
            channel="alipay",
            day=run.day,
            kind="unknown_order",
            out_trade_no=f"D{next(_serial)}",
            run=run,
            found_at=NOW,
        )
        for _ in range(n)
    )


def _disputes(n: int, loan: Loan) -> None:
    payment = _payments(1, loan)[0]
    Dispute.objects.bulk_create(
        Dispute(
            borrower_id=loan.borrower_id,
            loan=loan,
            payment=payment,
            category="other",
            description="d",
            created_at=NOW,
            updated_at=NOW,
        )
        for _ in range(n)
    )


def _notices(n: int, loan: Loan) -> None:
    Notice.objects.bulk_create(
        Notice(
            recipient_id=loan.borrower_id,
            kind="payment_succeeded",
            subject_type="payment",
            subject_id=i,
            dedupe_key=f"k{next(_serial)}",
            not_before=NOW,
            state_changed_at=NOW,
            created_at=NOW,
        )
        for i in range(n)
    )


def _templates(n: int, loan: Loan) -> None:
    existing = set(NoticeTemplate.objects.values_list("kind", "language", "channel"))
    combos = [
        c
        for c in itertools.product(
            [k for k, _ in Notice._meta.get_field("kind").choices],  # type: ignore[union-attr]
            ["zh-hans", "en"],
            ["sms", "push", "in_app"],
        )
        if c not in existing
    ]
    NoticeTemplate.objects.bulk_create(
        NoticeTemplate(kind=k, language=lang, channel=ch, text="{amount}")
        for k, lang, ch in combos[:n]
    )


def _preferences(n: int, loan: Loan) -> None:
    NotificationPreference.objects.bulk_create(
        NotificationPreference(user=u, channel_order=["sms"]) for u in _users(n, loan)
    )


def _groups(n: int, loan: Loan) -> None:
    Group.objects.bulk_create(Group(name=f"g{next(_serial)}") for _ in range(n))


Builder = Callable[[int, Loan], Any]
PAGES: dict[str, tuple[Builder, type[models.Model]]] = {
    "/admin/repayments/user/": (_users, User),
    "/admin/repayments/loanproduct/": (_products, LoanProduct),
    "/admin/repayments/loan/": (_loans, Loan),
    "/admin/repayments/payment/": (_payments, Payment),
    "/admin/repayments/paymentattempt/": (_attempts, PaymentAttempt),
    "/admin/repayments/paymentevent/": (_events, PaymentEvent),
    "/admin/repayments/allocation/": (_allocations, Allocation),
    "/admin/repayments/settlementquote/": (_quotes, SettlementQuote),
    "/admin/repayments/boundcard/": (_cards, BoundCard),
    "/admin/repayments/scheduleddebit/": (_debits, ScheduledDebit),
    "/admin/repayments/auditentry/": (_audit, AuditEntry),
    "/admin/repayments/inboundcallbackrecord/": (_callbacks, InboundCallbackRecord),
    "/admin/repayments/reconciliationrun/": (_runs, ReconciliationRun),
    "/admin/repayments/discrepancy/": (_discrepancies, Discrepancy),
    "/admin/repayments/dispute/": (_disputes, Dispute),
    "/admin/notifications/notice/": (_notices, Notice),
    "/admin/notifications/noticetemplate/": (_templates, NoticeTemplate),
    "/admin/notifications/notificationpreference/": (_preferences, NotificationPreference),
    "/admin/auth/group/": (_groups, Group),
}


def _queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(captured.captured_queries)


@pytest.mark.parametrize("path", list(PAGES))
def test_changelist_queries_do_not_grow_with_rows(
    admin_client: Client, make_loan: Callable[..., Loan], path: str
) -> None:
    build, model = PAGES[path]
    loan = make_loan()
    build(SMALL, loan)
    admin_client.get(path)  # warm per-process caches (content types, permissions)
    few = _queries(admin_client, path)

    build(LARGE - SMALL, loan)
    many = _queries(admin_client, path)

    # Notice templates are capped by their (kind, language, channel) combinations.
    assert model._default_manager.count() >= (LARGE if model is not NoticeTemplate else 48)
    assert many == few, f"{path}: {few} queries for {SMALL} rows, {many} for {LARGE}"


def test_channel_settings_list_is_bounded(admin_client: Client) -> None:
    admin_client.get("/admin/repayments/channelsetting/")
    assert _queries(admin_client, "/admin/repayments/channelsetting/") <= 8


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_every_change_page_renders(
    admin_client: Client, make_loan: Callable[..., Loan], language: str
) -> None:
    loan = make_loan()
    failures = []
    for path, (build, model) in PAGES.items():
        build(1, loan)
        obj = model._default_manager.order_by("-pk").first()
        assert obj is not None, path
        response = admin_client.get(f"{path}{obj.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
        if response.status_code != 200:
            failures.append((path, response.status_code))
    assert failures == []
