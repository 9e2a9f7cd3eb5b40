"""The borrower's dispute pages (issue 7): list, new case from a payment or a trade
number with an optional screenshot, the conversation and the screenshot view.

Pages are asked for in English (``Accept-Language: en``) so the assertions do not
depend on translations being compiled.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from repayments.models import (
    AuditEntry,
    Dispute,
    DisputeCategory,
    DisputeMessage,
    DisputeResolution,
    DisputeStatus,
    Loan,
    Payment,
    Role,
    User,
)
from repayments.services.disputes import dispute_open, dispute_reply, dispute_resolve
from repayments.services.users import staff_create
from tests.integration.helpers import open_attempt, pay

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64
FIVE_MB = 5 * 1024 * 1024


@pytest.fixture(autouse=True)
def media_in_tmp(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def borrower(make_borrower: Callable[..., User]) -> User:
    return make_borrower()


@pytest.fixture
def loan(make_loan: Callable[..., Loan], borrower: User) -> Loan:
    return make_loan(borrower=borrower, start_date=timezone.localdate() - timedelta(days=20))


@pytest.fixture
def signed_in(client: Any, borrower: User) -> Any:
    client.force_login(borrower)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def agent(now: datetime) -> User:
    return staff_create(
        username="agent-portal",
        password="demo12345-Test",
        role=Role.SUPPORT_AGENT,
        full_name="Agent Zhou",
        now=now,
    )


def text_of(response: Any) -> str:
    """The visible text of a page, whitespace collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html_lib.unescape(body))


def open_case(loan: Loan, **fields: Any) -> Dispute:
    values: dict[str, Any] = {
        "category": DisputeCategory.PAID_NOT_SHOWN,
        "description": "I paid with Alipay but it does not show",
        "now": timezone.now(),
    }
    values.update(fields)
    return dispute_open(borrower=loan.borrower, loan=loan, **values)


def form_data(loan: Loan, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "loan": loan.pk,
        "category": DisputeCategory.PAID_NOT_SHOWN.value,
        "description": "Paid 100 yuan at 10:00 with Alipay, the record shows nothing.",
        "trade_no": "",
    }
    data.update(fields)
    return data


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


# --- The list -------------------------------------------------------------------------------


def test_list_shows_each_case_with_status_and_last_reply_and_only_the_borrowers_own(
    signed_in, loan, make_loan, agent
) -> None:
    answered = open_case(loan, category=DisputeCategory.CHARGED_TWICE)
    dispute_reply(dispute=answered, author=agent, body="We are checking", now=timezone.now())
    waiting = open_case(loan, category=DisputeCategory.WRONG_MESSAGE)
    someone_elses = open_case(make_loan())

    response = signed_in.get(reverse("disputes"))

    assert response.status_code == 200
    page = text_of(response)
    html = response.content.decode()
    assert answered.case_number in page
    assert waiting.case_number in page
    assert someone_elses.case_number not in page
    assert str(someone_elses.public_id) not in html
    assert "I was charged twice" in page
    assert "I got a wrong message" in page
    assert page.count("Being handled") == 1  # the answered case moved on
    assert page.count("Open") >= 1
    assert "Not yet" in page  # the case with no message yet
    assert reverse("dispute-detail", args=[answered.public_id]) in html


def test_list_says_how_to_report_when_there_is_no_case(signed_in, loan) -> None:
    page = text_of(signed_in.get(reverse("disputes")))
    assert "You have not reported any problem" in page
    assert "Report a problem" in page


# --- A new case -----------------------------------------------------------------------------


def test_new_case_from_a_payment_shows_it_and_links_the_case_to_it(signed_in, loan) -> None:
    payment = pay(loan, "100.00", timezone.now())
    url = reverse("dispute-new") + f"?payment={payment.public_id}"

    page = signed_in.get(url)
    assert page.status_code == 200
    assert "About this repayment" in text_of(page)
    html = page.content.decode()
    for described in re.findall(r'aria-describedby="([^"]+)"', html):
        assert f'id="{described}"' in html  # each hint is where the field says it is
    assert "¥100.00" in text_of(page)
    checked = re.search(r'<input[^>]*value="paid_not_shown"[^>]*>', page.content.decode())
    assert checked is not None
    assert "checked" in checked.group(0)

    response = signed_in.post(url, form_data(loan, category="amount_mismatch"))

    dispute = Dispute.objects.get(borrower=loan.borrower)
    assert response.status_code == 302
    assert response.url == reverse("dispute-detail", args=[dispute.public_id])
    assert dispute.payment == payment
    assert dispute.category == DisputeCategory.AMOUNT_MISMATCH
    assert not dispute.screenshot
    detail = text_of(signed_in.get(response.url))
    assert dispute.case_number in detail
    assert "We received your report" in detail


def test_new_case_with_a_trade_number_is_prefilled_and_finds_the_payment(signed_in, loan) -> None:
    payment, attempt = open_attempt(loan, "100.00", timezone.now())
    url = reverse("dispute-new") + f"?trade_no={attempt.out_trade_no}"
    page = signed_in.get(url)
    assert f'value="{attempt.out_trade_no}"' in page.content.decode()

    response = signed_in.post(url, form_data(loan, trade_no=attempt.out_trade_no))

    assert response.status_code == 302
    dispute = Dispute.objects.get(borrower=loan.borrower)
    assert dispute.payment == payment
    assert dispute.channel_trade_no == attempt.out_trade_no


def test_a_valid_screenshot_is_stored_and_shown_only_to_its_borrower(
    signed_in, loan, client, make_borrower, media_in_tmp
) -> None:
    shot = SimpleUploadedFile("my photo.png", PNG, content_type="image/png")
    response = signed_in.post(reverse("dispute-new"), {**form_data(loan), "screenshot": shot})
    assert response.status_code == 302
    dispute = Dispute.objects.get(borrower=loan.borrower)
    assert dispute.screenshot.name.endswith(".png")
    assert "my photo" not in dispute.screenshot.name  # the sender's file name is not used
    [stored] = stored_files(media_in_tmp)
    assert stored.read_bytes() == PNG

    url = reverse("dispute-screenshot", args=[dispute.public_id])
    assert url in signed_in.get(response.url).content.decode()
    served = signed_in.get(url)
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["Cache-Control"] == "private, no-store"
    assert b"".join(served.streaming_content) == PNG

    client.force_login(make_borrower())
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("content", "name", "error"),
    [
        (GIF, "shot.gif", "must be a PNG, JPEG or WebP image"),
        (b"<?php echo 1; ?>", "shot.png", "must be a PNG, JPEG or WebP image"),
        (PNG + b"\x00" * FIVE_MB, "shot.png", "at most 5 MB"),
    ],
    ids=["gif", "script-named-png", "over-5-mb"],
)
def test_a_bad_screenshot_is_refused_with_a_translated_error_and_nothing_written(
    signed_in, loan, media_in_tmp, content: bytes, name: str, error: str
) -> None:
    shot = SimpleUploadedFile(name, content, content_type="image/png")
    audit_before = AuditEntry.objects.count()

    response = signed_in.post(reverse("dispute-new"), {**form_data(loan), "screenshot": shot})

    assert response.status_code == 400
    assert error in text_of(response)
    assert not Dispute.objects.exists()
    assert AuditEntry.objects.count() == audit_before
    assert stored_files(media_in_tmp) == []


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"category": ""}, "Please choose what went wrong."),
        ({"category": "refund_me_now"}, "Select a valid choice."),
        ({"description": "   "}, "Please describe the problem."),
        ({"description": "x" * 2001}, "at most 2000 characters"),
        ({"trade_no": "9" * 65}, "at most 64 characters"),
    ],
    ids=["no-category", "unknown-category", "blank-text", "long-text", "long-trade-no"],
)
def test_missing_or_bad_fields_give_field_errors_and_nothing_is_written(
    signed_in, loan, fields: dict[str, str], error: str
) -> None:
    response = signed_in.post(reverse("dispute-new"), form_data(loan, **fields))
    assert response.status_code == 400
    assert error in text_of(response)
    assert not Dispute.objects.exists()


def test_a_case_cannot_name_another_borrowers_loan_or_payment(signed_in, loan, make_loan) -> None:
    other_loan = make_loan()
    other_payment = pay(other_loan, "50.00", timezone.now())

    named = signed_in.get(reverse("dispute-new") + f"?payment={other_payment.public_id}")
    forged = signed_in.post(reverse("dispute-new"), {**form_data(loan), "loan": other_loan.pk})
    garbled = signed_in.get(reverse("dispute-new") + "?payment=not-a-uuid")

    assert named.status_code == 404
    assert garbled.status_code == 404
    assert forged.status_code == 400
    assert "Select a valid choice" in text_of(forged)
    assert not Dispute.objects.exists()


# --- One case -----------------------------------------------------------------------------


def test_the_conversation_shows_replies_but_never_internal_notes(signed_in, loan, agent) -> None:
    dispute = open_case(loan)
    dispute_reply(
        dispute=dispute,
        author=agent,
        body="Staff only: looks like a duplicate",
        internal=True,
        now=timezone.now(),
    )
    dispute_reply(
        dispute=dispute, author=agent, body="We asked Alipay, please wait", now=timezone.now()
    )

    page = text_of(signed_in.get(reverse("dispute-detail", args=[dispute.public_id])))

    assert "I paid with Alipay but it does not show" in page
    assert "We asked Alipay, please wait" in page
    assert "Customer support" in page
    assert "Staff only" not in page
    assert "Being handled" in page


def test_the_borrower_replies_and_the_message_joins_the_case(signed_in, loan) -> None:
    dispute = open_case(loan)
    url = reverse("dispute-detail", args=[dispute.public_id])

    empty = signed_in.post(url, {"body": "  "})
    assert empty.status_code == 400
    assert "Please write your message." in text_of(empty)
    assert not DisputeMessage.objects.exists()

    response = signed_in.post(url, {"body": "Here is my Alipay number 2026..."})

    assert response.status_code == 302
    [message] = DisputeMessage.objects.filter(dispute=dispute)
    assert message.author == loan.borrower
    assert not message.internal
    assert "Here is my Alipay number" in text_of(signed_in.get(url))


def test_a_closed_case_takes_no_reply_and_offers_a_new_report(signed_in, loan, agent) -> None:
    payment = pay(loan, "100.00", timezone.now())
    dispute = open_case(loan, payment=payment)
    dispute_resolve(
        dispute=dispute,
        actor=agent,
        resolution=DisputeResolution.PAID_CONFIRMED,
        note="Confirmed and posted to installment 1.",
        now=timezone.now(),
    )
    url = reverse("dispute-detail", args=[dispute.public_id])

    page = signed_in.get(url)
    assert 'name="body"' not in page.content.decode()
    assert "Confirmed and posted to installment 1." in text_of(page)
    assert f"?payment={payment.public_id}" in page.content.decode()

    response = signed_in.post(url, {"body": "one more thing"}, follow=True)
    assert "This case is closed" in text_of(response)
    assert DisputeMessage.objects.filter(dispute=dispute).count() == 1  # the resolution only
    assert Dispute.objects.get(pk=dispute.pk).status == DisputeStatus.RESOLVED


@pytest.mark.parametrize(
    ("name", "method"),
    [("dispute-detail", "get"), ("dispute-detail", "post"), ("dispute-screenshot", "get")],
)
def test_another_borrowers_case_is_404(
    signed_in, make_loan, media_in_tmp, name: str, method: str
) -> None:
    shot = SimpleUploadedFile("a.png", PNG)
    theirs = open_case(make_loan(), screenshot=shot)
    response = getattr(signed_in, method)(reverse(name, args=[theirs.public_id]), {"body": "hi"})
    assert response.status_code == 404
    assert not DisputeMessage.objects.exists()


def test_a_case_without_a_screenshot_has_none_to_serve(signed_in, loan) -> None:
    dispute = open_case(loan)
    assert signed_in.get(reverse("dispute-screenshot", args=[dispute.public_id])).status_code == 404


def test_visitors_are_sent_to_sign_in(client, loan) -> None:
    dispute = open_case(loan)
    for url in (
        reverse("disputes"),
        reverse("dispute-new"),
        reverse("dispute-detail", args=[dispute.public_id]),
        reverse("dispute-screenshot", args=[dispute.public_id]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_the_payment_page_and_the_menu_lead_to_disputes(signed_in, loan) -> None:
    payment = pay(loan, "100.00", timezone.now())
    html = signed_in.get(reverse("payment-detail", args=[payment.public_id])).content.decode()
    assert f"{reverse('dispute-new')}?payment={payment.public_id}" in html
    assert f'href="{reverse("disputes")}"' in html


# --- Query bounds -------------------------------------------------------------------------


def _queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_query_counts_do_not_grow_with_cases_or_messages(
    signed_in, loan, agent, django_assert_max_num_queries
) -> None:
    payment: Payment = pay(loan, "100.00", timezone.now())
    first = open_case(loan, payment=payment)
    dispute_reply(dispute=first, author=agent, body="reply 0", now=timezone.now())
    signed_in.get(reverse("disputes"))  # the first request after sign-in records last-seen
    list_few = _queries(signed_in, reverse("disputes"))
    detail_few = _queries(signed_in, reverse("dispute-detail", args=[first.public_id]))
    new_few = _queries(signed_in, reverse("dispute-new") + f"?payment={payment.public_id}")

    for n in range(24):
        open_case(loan, description=f"case {n}")
    for n in range(1, 15):
        dispute_reply(dispute=first, author=agent, body=f"reply {n}", now=timezone.now())

    with django_assert_max_num_queries(10):
        signed_in.get(reverse("disputes"))
    list_many = _queries(signed_in, reverse("disputes"))
    detail_many = _queries(signed_in, reverse("dispute-detail", args=[first.public_id]))
    new_many = _queries(signed_in, reverse("dispute-new") + f"?payment={payment.public_id}")

    assert list_many == list_few, f"list: {list_few} queries for 1 case, {list_many} for 25"
    assert detail_many == detail_few, f"detail: {detail_few} for 1 reply, {detail_many} for 15"
    assert new_many == new_few
    assert detail_many <= 12
    assert new_many <= 12
    print(f"disputes list {list_many} queries, detail {detail_many}, new {new_many}")
