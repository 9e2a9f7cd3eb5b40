"""The borrower's journeys of issue 7 that ``test_record_journey.py`` does not finish,
in headless Chromium against the live server and the channel sandbox over HTTP:

- an installment paid with Alipay through the sandbox checkout, then the schedule
  shows it paid;
- the fallback paid to the end: the bank channel is down, the reason is shown, the
  next method is one tap, and that payment succeeds;
- an early settlement: quote with every line, paid bound to the quote, loan settled;
- a dispute filed from a payment, with a screenshot, then answered by support.

Every page on the way is saved at phone (390x844) and desktop (1280x800) width under
var/screenshots/journeys/. Assertions use data, ids and symbols, or strings whose
translation is already compiled, so they hold before new translations are merged.
"""

from __future__ import annotations

import re
import struct
import zlib
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from repayments.domain.states import PaymentStatus
from repayments.models import (
    ChannelSetting,
    Dispute,
    DisputeCategory,
    DisputeStatus,
    LoanStatus,
    Payment,
    PaymentPurpose,
    Role,
    User,
)
from repayments.services.demo import DEMO_PASSWORD, DEMO_PHONES
from repayments.services.disputes import dispute_reply
from repayments.services.users import staff_create
from tests.e2e.test_pages import assert_fits_phone, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

ON_SCHEDULE = DEMO_PHONES[0]  # 张伟: a withholding still being confirmed
OVERDUE = DEMO_PHONES[1]  # 李娜: two installments overdue, no payment in flight
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


@pytest.fixture
def media_in_tmp(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def png_bytes(width: int = 24, height: int = 16) -> bytes:
    """A real (tiny, green) PNG, as a phone's screenshot would be."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\x0b\x6e\x4f" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def pay_at_alipay_checkout(tab: Any, portal_channels: Any) -> None:
    """On the sandbox's Alipay checkout page: pay from the balance, wait for the notify."""
    assert tab.url.startswith(f"{portal_channels.sandbox.url}/alipay/gateway.do")
    tab.get_by_role("button", name="余额支付").click()
    tab.wait_for_load_state()


def test_alipay_installment_then_the_schedule_shows_it_paid(
    page, live_server, channel_settings, portal_channels, journey_shots
) -> None:
    base = live_server.url
    borrower = User.objects.get(phone=OVERDUE)
    loan = borrower.loans.get()
    oldest_unpaid = next(i for i in loan.installments.order_by("number") if not i.is_paid)
    number = oldest_unpaid.number
    sign_in(page, base, OVERDUE, DEMO_PASSWORD)
    journey_shots(page, "01-home")

    page.goto(f"{base}/loans/{loan.pk}/schedule/")
    before = page.locator(f"#installment-{number}")
    assert "✓" not in before.locator(".status").inner_text()
    assert_fits_phone(page)
    journey_shots(page, "02-schedule-before")

    page.goto(f"{base}/loans/{loan.pk}/pay/")
    with page.expect_navigation():
        page.get_by_role("button", name="下一步：选择支付方式").click()
    page.locator("label.method", has_text="支付宝").first.locator("input").check()
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^确认支付")).click()
    journey_shots(page, "03-alipay-checkout")
    portal_channels.sandbox.receiver.browser_base = base
    pay_at_alipay_checkout(page, portal_channels)
    portal_channels.sandbox.receiver.wait(1)

    payment = Payment.objects.get(borrower=borrower, status=PaymentStatus.PROCESSING)
    # The checkout's return_url brings the borrower back to the payment's own page.
    assert page.url == f"{base}/record/{payment.public_id}/"
    assert "确认中" in page.locator("main").inner_text()
    page.goto(f"{base}/record/")
    row = page.locator(f"#payment-{payment.public_id}")
    assert "确认中" in row.inner_text()
    journey_shots(page, "04-record-processing")

    [ack] = portal_channels.relay()
    assert ack.status_code == 200
    row.locator(".status", has_text="成功").wait_for(timeout=20_000)  # its own poll, no reload
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    journey_shots(page, "05-record-succeeded")

    page.goto(f"{base}/loans/{loan.pk}/schedule/")
    paid = page.locator(f"#installment-{number}")
    assert "✓" in paid.locator(".status").inner_text()
    if paid.locator("details").get_attribute("open") is None:
        paid.locator("summary").click()  # a paid installment is folded: tap to see it
    assert paid.locator("dd.total").inner_text() == "¥0.00"
    oldest_unpaid.refresh_from_db()
    assert oldest_unpaid.is_paid
    assert_fits_phone(page)
    journey_shots(page, "06-schedule-paid")


def test_bank_channel_down_the_reason_is_shown_and_the_next_method_pays(
    page, live_server, channel_settings, portal_channels, journey_shots
) -> None:
    base = live_server.url
    borrower = User.objects.get(phone=OVERDUE)
    loan = borrower.loans.get()
    portal_channels.sandbox.control("unionpay/faults", {"down": True})
    sign_in(page, base, OVERDUE, DEMO_PASSWORD)

    page.goto(f"{base}/loans/{loan.pk}/pay/?choice=next")
    page.locator("label.method", has_text="银行卡代扣").first.locator("input").check()
    journey_shots(page, "10-pay-methods")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^确认支付")).click()

    # The reason, in words, and the next method offered with one tap.
    assert "支付渠道暂时无法连接" in page.inner_text("main")
    offer = page.locator("section.fallback")
    first = offer.locator("button").first
    assert first.inner_text().startswith("改用支付宝")
    assert_fits_phone(page)
    journey_shots(page, "11-fallback-offer")
    payment = Payment.objects.get(borrower=borrower, status=PaymentStatus.FAILED)

    with page.expect_navigation():
        first.click()
    pay_at_alipay_checkout(page, portal_channels)
    portal_channels.relay(expected=1)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert [a.channel for a in payment.attempts.order_by("id")] == ["unionpay", "alipay"]
    page.goto(f"{base}/record/{payment.public_id}/")
    summary = page.locator("section.summary")
    assert "✓" in summary.locator(".status").inner_text()
    assert "已改用" in summary.inner_text()  # the bank did not go through; paid with Alipay
    assert page.locator("section.fallback").count() == 0
    assert_fits_phone(page)
    journey_shots(page, "12-fallback-paid-detail")


def test_early_settlement_quote_paid_and_the_loan_settled(
    page, live_server, channel_settings, portal_channels, journey_shots
) -> None:
    base = live_server.url
    borrower = User.objects.get(phone=OVERDUE)
    loan = borrower.loans.get()
    sign_in(page, base, OVERDUE, DEMO_PASSWORD)

    page.goto(f"{base}/loans/{loan.pk}/settlement/")
    # Today is filled in (an ISO value: a localised one shows an empty date field).
    today = timezone.localdate().isoformat()
    assert page.locator("input[name=settlement_date]").input_value() == today
    journey_shots(page, "20-settlement-date")
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()

    # The quote: every line, its total and its validity, then how to pay it.
    assert "/settlement/" in page.url
    lines = page.locator("dl.breakdown dt")
    assert lines.count() >= 4
    total = page.locator("#quote-total").inner_text()
    assert total.startswith("¥")
    assert_fits_phone(page)
    journey_shots(page, "21-settlement-quote")
    page.locator("label.method", has_text="银行卡代扣").first.locator("input").check()
    with page.expect_navigation():
        page.locator("form[action$='/pay/'] button[type=submit]").click()

    payment = Payment.objects.get(borrower=borrower, purpose=PaymentPurpose.EARLY_SETTLEMENT)
    assert payment.quote is not None
    assert f"¥{payment.amount:,.2f}" == total
    journey_shots(page, "22-settlement-processing")
    portal_channels.relay(expected=1)

    payment.refresh_from_db()
    loan.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert loan.status == LoanStatus.SETTLED_EARLY
    page.goto(f"{base}/record/{payment.public_id}/")
    assert "✓" in page.locator("section.summary .status").inner_text()
    assert "已到账" in page.locator("ol.timeline").inner_text()
    journey_shots(page, "23-settlement-paid-detail")
    page.goto(f"{base}/")
    assert page.get_by_role("link", name="立即还款").count() == 0  # nothing left to repay
    journey_shots(page, "24-home-settled")


def test_a_dispute_filed_from_a_payment_with_a_screenshot_and_answered(
    page, live_server, channel_settings, media_in_tmp, journey_shots, tmp_path
) -> None:
    base = live_server.url
    borrower = User.objects.get(phone=ON_SCHEDULE)
    payment = Payment.objects.get(borrower=borrower, status=PaymentStatus.PROCESSING)
    screenshot = tmp_path / "alipay-bill.png"
    screenshot.write_bytes(png_bytes())
    sign_in(page, base, ON_SCHEDULE, DEMO_PASSWORD)

    page.goto(f"{base}/record/{payment.public_id}/")
    with page.expect_navigation():
        page.locator(f"a[href='/disputes/new/?payment={payment.public_id}']").click()
    assert page.locator("input[name=category][value=paid_not_shown]").is_checked()
    assert page.locator("section.about").is_visible()  # the payment it is about
    assert_fits_phone(page)
    journey_shots(page, "30-dispute-new")

    page.locator("input[name=category][value=charged_twice]").check()
    page.fill("textarea[name=description]", "银行卡扣了两次款，但记录里只有一笔。")
    page.set_input_files("input[name=screenshot]", str(screenshot))
    with page.expect_navigation():
        page.locator("form.dispute-form button[type=submit]").click()

    dispute = Dispute.objects.get(borrower=borrower)
    assert page.url == f"{base}/disputes/{dispute.public_id}/"
    assert dispute.payment == payment
    assert dispute.category == DisputeCategory.CHARGED_TWICE
    assert dispute.status == DisputeStatus.OPEN
    assert dispute.case_number in page.inner_text("main")
    shot_link = page.locator(f"a[href='/disputes/{dispute.public_id}/screenshot/']")
    assert shot_link.count() == 1
    image = page.request.get(f"{base}/disputes/{dispute.public_id}/screenshot/")
    assert image.status == 200
    assert image.headers["content-type"] == "image/png"
    assert image.body() == screenshot.read_bytes()
    assert_fits_phone(page)
    journey_shots(page, "31-dispute-filed")

    agent = staff_create(
        username="agent-e2e",
        password=DEMO_PASSWORD,
        role=Role.SUPPORT_AGENT,
        full_name="客服 小李",
        now=timezone.now(),
    )
    dispute_reply(
        dispute=dispute,
        author=agent,
        body="已收到，我们正在和银行核对这两笔扣款。",
        now=timezone.now(),
    )
    page.fill("textarea[name=body]", "好的，谢谢。")
    with page.expect_navigation():
        page.locator("form.reply-form button[type=submit]").click()
    thread = page.locator("ol.thread").inner_text()
    assert "正在和银行核对" in thread
    assert "好的，谢谢。" in thread
    journey_shots(page, "32-dispute-conversation")

    with page.expect_navigation():
        page.locator("nav.tabs a[href='/disputes/']").click()
    assert page.locator("li.dispute").count() == 1
    assert dispute.case_number in page.locator("li.dispute").inner_text()
    assert_fits_phone(page)
    journey_shots(page, "33-disputes-list")
