"""What a borrower (on a phone) and an operator see, in a real browser.

Each test drives Chromium against the live server and saves a full-page phone-sized
screenshot to var/screenshots/ for a human to look at.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import translation

from portal.forms import SignInForm
from repayments.services.demo import DEMO_PASSWORD, DEMO_PHONES

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # WhiteNoise looks for collected files; the live server serves them from the finders.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

BORROWER = DEMO_PHONES[0]  # 张伟: 比亚迪 秦PLUS, contract AX-2025-000101
OTHER_BORROWERS_LOANS = ("大众", "AX-2025-000202", "丰田", "AX-2025-000303")
PHONE_WIDTH = 390
MONEY = re.compile(r"^¥\d{1,3}(,?\d{3})*\.\d{2}$")


def gettext_in(language: str, message: Any) -> str:
    with translation.override(language):
        return translation.gettext(str(message))


def assert_fits_phone(page: Any) -> None:
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"page is {width}px wide: it scrolls sideways on a phone"


def sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form.stack button[type=submit]")


def test_visitor_sees_welcome_page_styled_and_fitting_a_phone(page, live_server, shoot):
    response = page.goto(f"{live_server.url}/")
    assert response.status == 200

    # The stylesheet was fetched and applied: the top bar is painted in the brand colour.
    topbar_bg = page.eval_on_selector(".topbar", "el => getComputedStyle(el).backgroundColor")
    assert topbar_bg not in ("", "transparent", "rgba(0, 0, 0, 0)"), "site.css was not applied"
    assert topbar_bg == "rgb(11, 110, 79)"

    sign_in_links = page.locator("a[href='/login/']")
    assert sign_in_links.count() >= 1
    hero_button = page.locator(".hero a.button")
    assert hero_button.is_visible()
    assert hero_button.get_attribute("href") == "/login/"
    box = hero_button.bounding_box()
    assert box is not None
    assert box["height"] >= 44, "the sign-in button is too small to tap"

    assert_fits_phone(page)
    shoot(page, "welcome")


def test_borrower_sees_only_their_own_loans(page, live_server, demo, shoot):
    del demo
    sign_in(page, live_server.url, BORROWER, DEMO_PASSWORD)

    assert page.url == f"{live_server.url}/"
    cards = page.locator("article.card")
    assert cards.count() >= 1
    assert "比亚迪" in cards.first.inner_text()
    html = page.content()
    for other in OTHER_BORROWERS_LOANS:
        assert other not in html, f"borrower {BORROWER} can see someone else's loan ({other})"
    # Signed in: the top bar offers sign-out, not sign-in.
    assert page.locator(".topbar form[action='/logout/'] button[type=submit]").is_visible()

    assert_fits_phone(page)
    shoot(page, "home-borrower")


def test_borrower_sees_every_amount_to_the_fen(page, live_server, demo):
    del demo
    sign_in(page, live_server.url, BORROWER, DEMO_PASSWORD)

    amounts = [text.strip() for text in page.locator("article.card dd").all_inner_texts()]
    money = [text for text in amounts if text.startswith("¥")]
    assert len(money) >= 2
    for text in money:
        assert MONEY.match(text), f"amount {text!r} is not yuan to two decimals"


def test_wrong_password_shows_the_translated_error_and_stays_on_sign_in(
    page, live_server, demo, shoot
):
    del demo
    sign_in(page, live_server.url, BORROWER, "not-the-password")

    assert page.url.startswith(f"{live_server.url}/login/")
    expected = gettext_in("zh-hans", SignInForm.error_messages["invalid_login"])
    alert = page.locator("[role=alert]")
    assert alert.is_visible()
    assert alert.inner_text().strip() == expected
    # The borrower can try again without retyping their number.
    assert page.input_value("input[name=username]") == BORROWER
    assert page.input_value("input[name=password]") == ""

    assert_fits_phone(page)
    shoot(page, "login-error")


def test_admin_sees_loans_and_users_with_masked_phones(page, live_server, demo, shoot):
    del demo
    base = live_server.url
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", DEMO_PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit], button[type=submit]")
    assert page.url == f"{base}/admin/"

    def assert_no_full_phone() -> None:
        html = page.content()
        for phone in DEMO_PHONES:
            assert phone not in html, f"{page.url} shows the full mobile number {phone}"

    # Loans changelist, reached from the admin index.
    with page.expect_navigation():
        page.click("#content-main a[href='/admin/repayments/loan/']")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(DEMO_PHONES)
    assert "138****8000" in page.content()
    assert_no_full_phone()
    shoot(page, "admin-loans")

    # One loan's page (read-only: money changes go through services).
    with page.expect_navigation():
        page.get_by_role("link", name="AX-2025-000101").click()
    assert re.search(r"/admin/repayments/loan/\d+/change/$", page.url)
    assert "AX-2025-000101" in page.content()
    assert "比亚迪" in page.content()
    assert_no_full_phone()
    shoot(page, "admin-loan-change")

    # Users list: every borrower by masked number only.
    page.goto(f"{base}/admin/repayments/user/")
    assert "138****8000" in page.content()
    assert_no_full_phone()
    shoot(page, "admin-users")

    # A due-day batch file: its lines counted by status, in Chinese like the rest.
    batch = _batch_of_the_demo_attempts()
    page.goto(f"{base}/admin/repayments/debitbatch/{batch.pk}/change/")
    assert "各状态笔数" in page.content()
    assert f"{batch.line_count}" in page.locator(".field-line_count").inner_text()
    shoot(page, "admin-debit-batch")


def _batch_of_the_demo_attempts() -> Any:
    """The demo's withholding attempts recorded as one batch file (as a due-day run would)."""
    from django.db.models import Sum
    from django.utils import timezone

    from repayments.models import Channel, DebitBatch, PaymentAttempt

    attempts = PaymentAttempt.objects.filter(channel=Channel.UNIONPAY)
    now = timezone.now()
    batch = DebitBatch.objects.create(
        channel=Channel.UNIONPAY,
        batch_no="0001",
        placed_on=timezone.localdate(now),
        placed_at=now,
        sent_at=now,
        line_count=attempts.count(),
        total_amount=attempts.aggregate(total=Sum("amount"))["total"] or 0,
    )
    attempts.update(debit_batch=batch)
    return batch


def test_switching_to_english_translates_the_welcome_page(page, live_server):
    page.goto(f"{live_server.url}/")
    assert page.get_attribute("html", "lang") == "zh-hans"
    heading = "Your car loan, repaid with peace of mind"
    assert page.inner_text(".hero h1") == gettext_in("zh-hans", heading)

    with page.expect_navigation():
        page.click(".topbar form.lang button[value=en]")

    assert page.url == f"{live_server.url}/"
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text(".hero h1") == heading
    assert page.locator(".topbar a[href='/login/']").inner_text() == "Sign in"
    assert page.locator(".hero a.button").inner_text() == "Sign in with your mobile number"
    # And the switch offers the way back.
    assert page.locator(".topbar form.lang button[value=zh-hans]").inner_text() == "中文"


def test_default_language_pages_are_in_chinese(page, live_server):
    page.goto(f"{live_server.url}/login/")
    assert page.get_attribute("html", "lang") == "zh-hans"
    # Django's own catalog already gives the password label in Chinese...
    assert page.inner_text("label[for=id_password]") == "密码"
    # ...and the project's own strings must be too, not the English source text.
    assert page.inner_text("main h1") != "Sign in"
    assert page.inner_text("label[for=id_username]") != "Mobile number or username"
