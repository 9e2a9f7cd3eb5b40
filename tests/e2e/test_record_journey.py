"""The repayment record journey in a real browser (issue 7).

A demo borrower pays an installment with Alipay through the sandbox's checkout
page, sees the payment being confirmed on the record page, and - once the
channel's callback is relayed to the portal - watches the row turn succeeded
without reloading. Screenshots of each page at phone and desktop width go to
var/screenshots/.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from notifications.providers.base import Sent
from notifications.services import notice_dispatch, notices_claim
from repayments.domain.states import PaymentStatus
from repayments.models import ChannelSetting, Payment, User
from repayments.services.demo import DEMO_PASSWORD, DEMO_PHONES
from tests.e2e.test_pages import assert_fits_phone, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

BORROWER = DEMO_PHONES[1]  # 李娜: two installments overdue, no payment in flight
CHANNEL_DEFAULTS = (
    ("unionpay", 1, Decimal("200000.00")),
    ("alipay", 2, Decimal("50000.00")),
    ("wechatpay", 3, Decimal("50000.00")),
)


@pytest.fixture
def channel_settings(demo: list[str]) -> None:
    """The rows migration 0004 adds; a transactional test's flush removes them."""
    del demo
    for channel, priority, limit in CHANNEL_DEFAULTS:
        ChannelSetting.objects.get_or_create(
            channel=channel, defaults={"priority": priority, "single_payment_limit": limit}
        )


class InboxOnly:
    """A provider that takes every message: enough for the inbox to show deliveries."""

    def __init__(self, channel: str) -> None:
        self.name, self.channel = f"e2e-{channel}", channel

    def send(self, **kwargs: Any) -> Sent:
        return Sent(message_id=f"e2e-{kwargs['reference']}", delivered=self.channel == "push")


def test_alipay_payment_turns_succeeded_on_the_record_page_without_a_reload(
    page, live_server, channel_settings, portal_channels, shoot_sizes
) -> None:
    base = live_server.url
    sign_in(page, base, BORROWER, DEMO_PASSWORD)
    shoot_sizes(page, "journey-1-home")

    # Pay now: the oldest unpaid installment is offered first and already chosen.
    with page.expect_navigation():
        page.get_by_role("link", name="立即还款").first.click()
    assert page.locator("input[name=choice]:checked").get_attribute("value") == "next"
    assert_fits_phone(page)
    shoot_sizes(page, "journey-2-pay-amount")
    with page.expect_navigation():
        page.get_by_role("button", name="下一步：选择支付方式").click()

    # Every method is listed; the recommended one is marked; unavailable ones say why.
    methods = page.locator("label.method")
    assert methods.count() == 6
    assert page.locator("label.method .badge", has_text="推荐").count() == 1
    assert page.locator("label.method.unavailable .reason").count() >= 1
    assert_fits_phone(page)
    shoot_sizes(page, "journey-3-pay-methods")
    page.locator("label.method", has_text="支付宝").first.locator("input").check()
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^确认支付")).click()

    # The sandbox's Alipay checkout page: pay from the balance.
    assert page.url.startswith(f"{portal_channels.sandbox.url}/alipay/gateway.do")
    shoot_sizes(page, "journey-4-sandbox-checkout")
    page.get_by_role("button", name="余额支付").click()
    page.wait_for_load_state()
    portal_channels.sandbox.receiver.wait(1)  # Alipay has sent its notify...
    # ...but it has not reached us yet, and the channel cannot be asked either:
    # only the relayed callback can settle this payment.
    portal_channels.sandbox.control("alipay/faults", {"down": True})

    payment = Payment.objects.get(borrower__phone=BORROWER, status=PaymentStatus.PROCESSING)
    page.goto(f"{base}/record/")
    row = page.locator(f"#payment-{payment.public_id}")
    assert "确认中" in row.inner_text()
    assert row.get_attribute("hx-trigger") == "load delay:2s"
    assert_fits_phone(page)
    shoot_sizes(page, "journey-5-record-processing")
    page.set_viewport_size({"width": 390, "height": 844})

    [ack] = portal_channels.relay()
    assert ack.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED

    # No reload: the row's own poll brings the new status in (2 s, 4 s ... backoff).
    row = page.locator(f"#payment-{payment.public_id}")
    row.locator(".status", has_text="成功").wait_for(timeout=20_000)
    assert "✓" in row.locator(".status").inner_text()
    assert row.get_attribute("hx-trigger") is None  # final: polling stopped
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shoot_sizes(page, "journey-6-record-succeeded")

    # The detail page tells the story in plain words.
    with page.expect_navigation():
        row.locator("a.stretch").click()
    steps = page.locator("ol.timeline").inner_text()
    assert "已提交支付宝" in steps
    assert "支付宝确认已收到款项" in steps
    assert "已到账并入账第" in steps
    assert_fits_phone(page)
    shoot_sizes(page, "journey-7-payment-detail")

    # The success notice reaches the inbox with its delivery per channel.
    later = timezone.now() + timedelta(minutes=5)
    for notice_id in notices_claim(now=later):
        notice_dispatch(notice_id=notice_id, now=later, providers=InboxOnly)
    with page.expect_navigation():
        page.get_by_role("link", name="消息").click()
    assert page.locator("li.notice-item").count() >= 1
    assert "站内消息: 已送达" in page.locator("li.notice-item").first.inner_text()
    assert_fits_phone(page)
    shoot_sizes(page, "journey-8-notices")


def test_channel_down_shows_the_reason_and_offers_the_next_method(
    page, live_server, channel_settings, portal_channels, shoot_sizes
) -> None:
    base = live_server.url
    borrower = User.objects.get(phone=BORROWER)
    portal_channels.sandbox.control("unionpay/faults", {"down": True})
    sign_in(page, base, BORROWER, DEMO_PASSWORD)
    loan = borrower.loans.get()
    page.goto(f"{base}/loans/{loan.pk}/pay/?choice=next")
    page.locator("label.method", has_text="银行卡代扣").first.locator("input").check()
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^确认支付")).click()

    assert "/record/" in page.url
    assert "支付渠道暂时无法连接" in page.inner_text("main")
    offer = page.locator("section.fallback")
    assert offer.is_visible()
    first = offer.locator("button").first
    assert first.inner_text().startswith("改用支付宝")
    assert_fits_phone(page)
    shoot_sizes(page, "fallback-offer")
    with page.expect_navigation():
        first.click()
    assert page.url.startswith(f"{portal_channels.sandbox.url}/alipay/gateway.do")


def test_history_with_a_fallback_a_late_success_and_a_withholding_in_flight(
    page, live_server, channel_settings, shoot_sizes
) -> None:
    base = live_server.url
    sign_in(page, base, DEMO_PHONES[0], DEMO_PASSWORD)  # 张伟
    page.goto(f"{base}/record/?status=processing")
    assert page.locator("details#record-filters").get_attribute("open") is not None
    assert page.locator("details#trade-lookup").get_attribute("open") is None
    rows = page.locator("li.payment")
    assert rows.count() == 1
    assert "确认中" in rows.first.inner_text()
    assert_fits_phone(page)
    shoot_sizes(page, "history-1-record-filtered")

    page.goto(f"{base}/record/?status=succeeded")
    fallback_row = page.locator("li.payment", has_text="已改用")
    assert fallback_row.count() == 1  # the Alipay failure, then WeChat Pay
    shoot_sizes(page, "history-2-record-succeeded")
    page.goto(f"{base}/record/?page=2&status=succeeded")
    page.goto(f"{base}/record/")
    with page.expect_navigation():
        page.locator("li.payment a.stretch").first.click()
    assert "等待银行确认" in page.locator("ol.timeline").inner_text()
    shoot_sizes(page, "history-3-detail-processing")
