"""The support journey in a real browser (issue 8).

A borrower's bank withholding went through at the bank, but its callback was
lost, so the record still says "processing" and the borrower raises a case. The
support agent finds the case in the queue, opens the payment, queries the channel
through the sandbox, sees it confirmed, and resolves the case. The borrower's
record page and messages then say so. Screenshots at phone and desktop width go
to var/screenshots/support/.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from notifications.models import Notice, NoticeKind
from notifications.providers.base import Sent
from notifications.services import notice_dispatch, notices_claim
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    AuditEntry,
    ChannelSetting,
    Dispute,
    DisputeCategory,
    DisputeStatus,
    PaymentMethodType,
    User,
)
from repayments.services.demo import DEMO_PASSWORD, DEMO_PHONES
from repayments.services.disputes import dispute_open
from repayments.services.payments import payment_create
from repayments.services.routing import payment_start
from tests.e2e.conftest import DESKTOP_VIEWPORT, PHONE_VIEWPORT, SCREENSHOT_DIR
from tests.e2e.test_pages import sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

BORROWER = DEMO_PHONES[1]  # 李娜: two installments overdue, no payment in flight
SHOTS = SCREENSHOT_DIR / "support"


class InboxOnly:
    """A provider that takes every message, so the inbox shows deliveries."""

    def __init__(self, channel: str) -> None:
        self.name, self.channel = f"e2e-{channel}", channel

    def send(self, **kwargs: Any) -> Sent:
        return Sent(message_id=f"e2e-{kwargs['reference']}", delivered=self.channel == "push")


@pytest.fixture
def shots() -> Any:
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab: Any, name: str) -> list[Path]:
        paths = []
        for label, size in (("phone", PHONE_VIEWPORT), ("desktop", DESKTOP_VIEWPORT)):
            tab.set_viewport_size(size)
            tab.evaluate("window.scrollTo(0, 0)")
            path = SHOTS / f"{name}-{label}.png"
            tab.screenshot(path=str(path), full_page=True)
            paths.append(path)
        tab.set_viewport_size(DESKTOP_VIEWPORT)
        return paths

    return take


@pytest.fixture
def lost_callback_case(demo: list[str], portal_channels: Any) -> Dispute:
    """A withholding the bank charged whose callback never arrived, and the case about it."""
    del demo
    for channel, priority in (("unionpay", 1), ("alipay", 2), ("wechatpay", 3)):
        ChannelSetting.objects.get_or_create(
            channel=channel,
            defaults={"priority": priority, "single_payment_limit": Decimal("200000.00")},
        )
    portal_channels.sandbox.control("unionpay/faults", {"drop_callbacks": 1.0})
    borrower = User.objects.get(phone=BORROWER)
    loan = borrower.loans.get()
    now = timezone.now()
    payment = payment_create(loan=loan, amount="1000.00", now=now)
    started = payment_start(
        payment_id=payment.pk,
        method_type=PaymentMethodType.BANK_DEBIT_CARD,
        now=now,
        card_token=borrower.bound_cards.values_list("card_token", flat=True).first() or "tok_1",
    )
    assert started.attempt.status == AttemptStatus.PENDING
    return dispute_open(
        borrower=borrower,
        loan=loan,
        payment=payment,
        category=DisputeCategory.OTHER,
        description="银行卡已经扣了1000元，但没收到短信，记录里还显示处理中，请帮忙核实。",
        now=now,
    )


def test_agent_queries_the_channel_and_resolves_the_case_the_borrower_sees_it(
    browser: Any, live_server: Any, lost_callback_case: Dispute, shots: Any
) -> None:
    base = live_server.url
    dispute = lost_callback_case
    payment = dispute.payment
    assert payment is not None
    staff = browser.new_context(viewport=DESKTOP_VIEWPORT, locale="zh-CN")
    staff.set_default_timeout(15_000)
    page = staff.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # The agent signs in and finds the case at the top of the queue, SLA running.
    sign_in(page, base, "agent", DEMO_PASSWORD)
    page.goto(f"{base}/support/")
    row = page.locator("table.queue tbody tr", has_text=dispute.case_number)
    assert row.count() == 1
    assert "138****8001" in row.inner_text()  # the phone, masked
    shots(page, "1-queue")

    # Search by the phone number finds the same payment.
    page.fill("#console-q", BORROWER)
    with page.expect_navigation():
        page.locator(".console-search button").click()
    assert page.locator("table.results tbody tr").count() >= 1
    shots(page, "2-search-phone")

    page.goto(f"{base}/support/disputes/{dispute.public_id}/")
    assert "没收到短信" in page.inner_text("main")
    with page.expect_navigation():
        page.locator("dl a[href*='/support/payments/']").click()
    assert f"/support/payments/{payment.public_id}/" in page.url
    assert "处理中" in page.locator("h1 .badge").inner_text()
    shots(page, "3-payment-processing")

    # Query the channel now: the sandbox says the bank charged it.
    page.fill("#query-reason", "借款人来电称已扣款")
    with page.expect_navigation():
        page.locator("form.action", has=page.locator("#query-reason")).locator("button").click()
    assert "成功" in page.locator("h1 .badge").inner_text()
    timeline = page.locator("ol.console-timeline").inner_text()
    assert "channel_queried" in timeline
    assert "succeeded" in timeline
    shots(page, "4-payment-confirmed")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED

    # Resolve the case as paid and confirmed, with a note for the borrower.
    page.goto(f"{base}/support/disputes/{dispute.public_id}/")
    page.select_option("#id_resolution", "paid_confirmed")
    page.fill("#resolve-note", "已向银行核实：1000元已于今日扣款成功，并已入账。")
    with page.expect_navigation():
        page.locator("form.action", has=page.locator("#resolve-note")).locator("button").click()
    assert page.locator("main .notice").count() >= 1
    shots(page, "5-case-resolved")
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.RESOLVED
    assert AuditEntry.objects.filter(action="dispute.resolved", actor_label="agent").exists()
    assert not errors, errors
    staff.close()

    # The borrower's notices go out (success and the case's outcome).
    later = timezone.now() + timedelta(minutes=5)
    for notice_id in notices_claim(now=later):
        notice_dispatch(notice_id=notice_id, now=later, providers=InboxOnly)
    kinds = set(Notice.objects.filter(recipient=dispute.borrower).values_list("kind", flat=True))
    assert {NoticeKind.PAYMENT_SUCCEEDED, NoticeKind.DISPUTE_UPDATE} <= kinds

    borrower = browser.new_context(viewport=PHONE_VIEWPORT, locale="zh-CN")
    tab = borrower.new_page()
    sign_in(tab, base, BORROWER, DEMO_PASSWORD)
    tab.goto(f"{base}/record/")
    row = tab.locator(f"#payment-{payment.public_id}")
    assert "成功" in row.locator(".status").inner_text()
    shots(tab, "6-borrower-record")
    tab.goto(f"{base}/notices/")
    inbox = tab.locator("ol.notices").inner_text()
    assert dispute.case_number in inbox
    resolved = Notice.objects.get(
        subject_type="dispute", subject_id=dispute.pk, params__event="paid_confirmed"
    )
    assert resolved.params["status"] in inbox  # the outcome, in the borrower's language
    shots(tab, "7-borrower-notices")
    tab.goto(f"{base}/disputes/{dispute.public_id}/")
    assert "已于今日扣款成功" in tab.inner_text("main")
    shots(tab, "8-borrower-case")
    borrower.close()
