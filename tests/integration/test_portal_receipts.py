"""Receipts of succeeded payments: the printable page and the PDF (issue 7)."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from repayments.domain.money import format_yuan
from repayments.domain.states import AttemptStatus
from repayments.models import Allocation, Loan, PaymentAttempt, User
from tests.conftest import at
from tests.integration.helpers import open_attempt, pay, report
from tests.integration.test_portal_pages import bind_card

pytestmark = pytest.mark.django_db


@pytest.fixture
def borrower(make_borrower) -> User:
    return make_borrower()


@pytest.fixture
def loan(make_loan, borrower) -> Loan:
    return make_loan(borrower=borrower, start_date=timezone.localdate() - timedelta(days=70))


@pytest.fixture
def signed_in(client, borrower):
    client.force_login(borrower)
    client.cookies["django_language"] = "en"
    return client


def text(response: Any) -> str:
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html_lib.unescape(body))


def pdf_text(response: Any) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    reader = PdfReader(BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def _paid_two_installments(loan: Loan) -> Any:
    """One payment covering installments 1 (paid late: with a penalty) and 2, and a little more."""
    first, second = loan.installments.order_by("number")[:2]
    when = at(second.due_date, 9)
    payment = pay(loan, first.total_due + second.total_due + Decimal("10.00"), when)
    PaymentAttempt.objects.filter(payment=payment).update(channel_trade_no="2026113022001400001")
    return payment


def test_receipt_page_shows_contract_installments_allocation_channel_and_trade_number(
    signed_in, loan, borrower
) -> None:
    bind_card(borrower, masked="6222 **** **** 1234")
    payment = _paid_two_installments(loan)
    allocations = list(Allocation.objects.filter(payment=payment))

    response = signed_in.get(reverse("receipt", args=[payment.public_id]))

    assert response.status_code == 200
    shown = text(response)
    assert f"Contract number {loan.contract_number}" in shown
    assert "Installments 1, 2" in shown
    assert f"Amount paid {format_yuan(payment.amount)}" in shown
    assert "Bank transaction number 2026113022001400001" in shown
    assert "Bank card withholding, card ending 1234" in shown
    assert "Bank withholding (UnionPay)" in shown
    for allocation in allocations:
        assert format_yuan(allocation.amount) in shown
    assert sum(a.amount for a in allocations) + payment.credit_added == payment.amount
    if payment.credit_added:
        assert (
            f"Kept as credit for your next installment {format_yuan(payment.credit_added)}" in shown
        )
    assert f"Total paid {format_yuan(payment.amount)}" in shown
    # Printable: the print stylesheet is linked and hides the navigation.
    assert "loan-pages.css" in response.content.decode()


def test_receipt_pdf_is_a_pdf_with_the_contract_and_trade_numbers(signed_in, loan) -> None:
    payment = _paid_two_installments(loan)

    response = signed_in.get(reverse("receipt-pdf", args=[payment.public_id]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")
    content = pdf_text(response)
    assert loan.contract_number in content
    assert "2026113022001400001" in content
    assert format_yuan(payment.amount).removeprefix("¥") in content


def test_receipt_pdf_in_chinese_uses_the_builtin_cid_font(client, borrower, loan) -> None:
    client.force_login(borrower)  # default language: zh-hans
    payment = _paid_two_installments(loan)
    response = client.get(reverse("receipt-pdf", args=[payment.public_id]))
    assert response.status_code == 200
    assert b"STSong-Light" in response.content
    assert loan.contract_number in pdf_text(response)


def test_a_payment_that_has_not_succeeded_has_no_receipt(signed_in, loan) -> None:
    processing, _ = open_attempt(loan, "50.00", at(timezone.localdate(), 9))
    failed_loan_payment = processing
    for name in ("receipt", "receipt-pdf"):
        assert signed_in.get(reverse(name, args=[failed_loan_payment.public_id])).status_code == 404


def test_a_failed_payment_has_no_receipt(signed_in, loan) -> None:
    failed, attempt = open_attempt(loan, "50.00", at(timezone.localdate(), 9))
    report(attempt, AttemptStatus.FAILED, at(timezone.localdate(), 9, 1))
    for name in ("receipt", "receipt-pdf"):
        assert signed_in.get(reverse(name, args=[failed.public_id])).status_code == 404


def test_another_borrowers_receipt_is_404(signed_in, make_loan) -> None:
    foreign = pay(make_loan(), "100.00", at(timezone.localdate(), 9))
    for name in ("receipt", "receipt-pdf"):
        response = signed_in.get(reverse(name, args=[foreign.public_id]))
        assert response.status_code == 404
        assert foreign.loan.contract_number.encode() not in response.content


def test_the_detail_page_of_a_succeeded_payment_links_its_receipt(signed_in, loan) -> None:
    paid = pay(loan, "100.00", at(timezone.localdate(), 9))
    failed, attempt = open_attempt(loan, "50.00", at(timezone.localdate(), 10))
    report(attempt, AttemptStatus.FAILED, at(timezone.localdate(), 10, 1))
    html = signed_in.get(reverse("payment-detail", args=[paid.public_id])).content.decode()
    assert reverse("receipt", args=[paid.public_id]) in html
    assert reverse("receipt-pdf", args=[paid.public_id]) in html
    html = signed_in.get(reverse("payment-detail", args=[failed.public_id])).content.decode()
    assert "/receipt" not in html


def test_receipt_views_need_sign_in(client, loan) -> None:
    paid = pay(loan, "100.00", at(timezone.localdate(), 9))
    response = client.get(reverse("receipt-pdf", args=[paid.public_id]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- Looking a payment up by its trade number on the record page ------------------------


def test_lookup_by_channel_trade_number_or_our_order_number_opens_the_payment(
    signed_in, loan
) -> None:
    payment = _paid_two_installments(loan)
    attempt = PaymentAttempt.objects.get(payment=payment)

    for number in ("2026113022001400001", f"  {attempt.out_trade_no} "):
        response = signed_in.get(reverse("record"), {"lookup": number})
        assert response.status_code == 302
        assert response["Location"] == reverse("payment-detail", args=[payment.public_id])


def test_lookup_of_an_unknown_number_says_so_and_offers_a_prefilled_dispute(
    signed_in, loan
) -> None:
    response = signed_in.get(reverse("record"), {"lookup": "4200009999202611300000000001"})
    assert response.status_code == 200
    shown = text(response)
    assert "We have no repayment of yours with the number 4200009999202611300000000001" in shown
    link = f"{reverse('dispute-new')}?trade_no=4200009999202611300000000001"
    assert link in response.content.decode()


def test_lookup_never_reveals_another_borrowers_payment(signed_in, make_loan) -> None:
    foreign = pay(make_loan(), "100.00", at(timezone.localdate(), 9))
    PaymentAttempt.objects.filter(payment=foreign).update(channel_trade_no="2026113022009999999")
    response = signed_in.get(reverse("record"), {"lookup": "2026113022009999999"})
    assert response.status_code == 200
    html = response.content.decode()
    assert str(foreign.public_id) not in html
    assert "We have no repayment of yours with the number 2026113022009999999" in text(response)


@pytest.mark.parametrize("bad", ["", "12", "2026 1130 <script>", "x" * 70])
def test_lookup_with_a_malformed_number_gets_a_clear_error(signed_in, loan, bad) -> None:
    response = signed_in.get(reverse("record"), {"lookup": bad})
    assert response.status_code == 200
    assert "6 to 64 letters and digits" in text(response)
    assert "<script>" not in response.content.decode().split('id="lookup-number"')[1][:200]
