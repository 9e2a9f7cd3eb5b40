"""The borrower portal's record, payment, pay-now and messages pages (issue 7).

Pages are driven through Django's test client against the real services; paying
goes through the channel sandbox over HTTP, with callbacks relayed to our own
``/callbacks/<channel>/`` endpoint.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import Delivery, DeliveryChannel
from notifications.providers.base import ProviderError, Sent
from notifications.services import notice_dispatch, notices_claim
from portal.presenters import MAX_POLL_SECONDS, poll_delay
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    BoundCard,
    Channel,
    Loan,
    Payment,
    PaymentAttempt,
    PaymentMethodType,
    User,
)
from tests.conftest import at
from tests.integration.conftest import PortalChannels
from tests.integration.helpers import open_attempt, pay, report

pytestmark = pytest.mark.django_db
T0 = at(date(2026, 2, 5), 10)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()  # the immediate-query rate limit and submit locks live here


@pytest.fixture
def borrower(make_borrower) -> User:
    return make_borrower()


@pytest.fixture
def loan(make_loan, borrower) -> Loan:
    return make_loan(borrower=borrower, start_date=timezone.localdate() - timedelta(days=20))


@pytest.fixture
def signed_in(client, borrower):
    client.force_login(borrower)
    return client


def bind_card(borrower: User, *, masked: str = "6222 **** **** 0018", token: str = "") -> BoundCard:
    return BoundCard.objects.create(
        borrower=borrower,
        channel=Channel.UNIONPAY,
        card_token=token or f"tok_{uuid.uuid4().hex[:12]}",
        card_masked=masked,
        bank_name="中国工商银行",
        priority=1,
        verified_until=date(2030, 12, 31),
    )


def page_text(response: Any) -> str:
    """What a reader sees: the HTML without tags, whitespace collapsed; attributes are
    kept in ``page_html``."""
    text = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html_lib.unescape(text))


def page_html(response: Any) -> str:
    return response.content.decode()


# --- The record ------------------------------------------------------------------------


def test_record_shows_each_payment_with_method_channel_times_and_a_worded_status(
    signed_in, loan, borrower
) -> None:
    bind_card(borrower)
    paid = pay(loan, "100.00", T0)
    failed, attempt = open_attempt(loan, "50.00", T0 + timedelta(hours=1))
    report(attempt, AttemptStatus.FAILED, T0 + timedelta(hours=1))
    processing, _ = open_attempt(loan, "70.00", T0 + timedelta(hours=2))

    response = signed_in.get(reverse("record"))
    html = page_text(response)

    assert "车贷还款记录" in html
    for payment in (paid, failed, processing):
        assert str(payment.public_id) in page_html(response)
    assert "¥100.00" in html
    assert "¥50.00" in html
    assert "¥70.00" in html
    # Status in words (with a symbol), never by colour alone.
    assert "✓ 成功" in html
    assert "✕ 失败" in html
    assert "确认中" in html
    # Card withholding names the one card the borrower has.
    assert "银行卡代扣，尾号0018" in html
    assert "未扣款：银行卡余额不足" in html  # the failure is explained
    # Only the processing row polls.
    assert page_html(response).count('hx-trigger="load delay:2s"') == 1


def test_record_filters_by_loan_status_dates_and_trade_number(
    signed_in, make_loan, borrower
) -> None:
    first = make_loan(borrower=borrower)
    second = make_loan(borrower=borrower)
    early = pay(first, "10.00", T0 - timedelta(days=40))
    late = pay(second, "20.00", T0)
    failed, attempt = open_attempt(second, "30.00", T0 + timedelta(minutes=5))
    report(attempt, AttemptStatus.FAILED, T0 + timedelta(minutes=5))
    trade_no = "2026TRADE0001"
    PaymentAttempt.objects.filter(payment=late).update(channel_trade_no=trade_no)

    def listed(**params: str) -> set[str]:
        html = page_html(signed_in.get(reverse("record"), params))
        return {str(p.public_id) for p in (early, late, failed) if str(p.public_id) in html}

    assert listed(loan=str(first.pk)) == {str(early.public_id)}
    assert listed(status="failed") == {str(failed.public_id)}
    assert listed(status="succeeded", loan=str(second.pk)) == {str(late.public_id)}
    day = timezone.localdate(T0).isoformat()
    assert listed(date_from=day, date_to=day) == {str(late.public_id), str(failed.public_id)}
    assert listed(trade_no=trade_no) == {str(late.public_id)}


def test_record_explains_a_backwards_date_range(signed_in, loan) -> None:
    response = signed_in.get(
        reverse("record"), {"date_from": "2026-02-10", "date_to": "2026-02-01"}
    )
    assert response.status_code == 200
    assert "结束日期不能早于开始日期" in page_text(response)


def test_record_never_lists_another_borrowers_payment(signed_in, make_loan) -> None:
    someone_else = pay(make_loan(), "99.00", T0)
    html = page_html(signed_in.get(reverse("record")))
    assert str(someone_else.public_id) not in html
    assert "¥99.00" not in html


def _bulk_payments(loan: Loan, count: int) -> None:
    """Arrange many payments quickly (rows only: the query count is what is measured)."""
    statuses = [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.PROCESSING]
    payments = Payment.objects.bulk_create(
        Payment(
            loan=loan,
            borrower_id=loan.borrower_id,
            amount=Decimal("100.00"),
            status=statuses[n % 3],
            value_at=T0 if n % 3 == 0 else None,
            succeeded_at=T0 if n % 3 == 0 else None,
            created_at=T0 - timedelta(hours=n),
            updated_at=T0,
        )
        for n in range(count)
    )
    attempt_status = {
        PaymentStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
        PaymentStatus.FAILED: AttemptStatus.FAILED,
        PaymentStatus.PROCESSING: AttemptStatus.FAILED,  # one open attempt per loan at most
    }
    PaymentAttempt.objects.bulk_create(
        PaymentAttempt(
            payment=p,
            loan=loan,
            channel=Channel.UNIONPAY,
            method_type=PaymentMethodType.BANK_DEBIT_CARD,
            out_trade_no=f"AXB{p.pk:012d}",
            amount=p.amount,
            status=attempt_status[PaymentStatus(p.status)],
            created_at=p.created_at,
            updated_at=p.created_at,
        )
        for p in payments
    )


def _queries(client: Any, url: str, **params: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(
            url, params, **({"HTTP_HX_REQUEST": "true"} if "poll" in params else {})
        )
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_record_page_query_count_does_not_grow_with_payments(
    signed_in, make_loan, borrower, django_assert_max_num_queries
) -> None:
    bind_card(borrower)
    loans = [make_loan(borrower=borrower) for _ in range(3)]
    for loan in loans:
        _bulk_payments(loan, 2)
    signed_in.get(reverse("record"))  # the first request after sign-in records last-seen
    cache.clear()
    few = _queries(signed_in, reverse("record"))
    for loan in loans:
        _bulk_payments(loan, 198)
    assert Payment.objects.filter(borrower=borrower).count() == 600

    with django_assert_max_num_queries(10):
        response = signed_in.get(reverse("record"))  # rendered: the stamp moved
    cached = _queries(signed_in, reverse("record"))
    cache.clear()
    many = _queries(signed_in, reverse("record"))
    filtered = _queries(signed_in, reverse("record"), loan=loans[0].pk, status="failed", page=3)
    one = Payment.objects.filter(borrower=borrower).first()
    assert one is not None
    detail = _queries(signed_in, reverse("payment-detail", args=[one.public_id]))

    assert response.content.decode().count('class="payment ') == 20  # one page of 20
    assert many == few, f"{few} queries for 6 payments but {many} for 600"
    assert filtered <= many
    assert cached <= 3  # session, user, stamp
    assert detail <= 15
    print(
        f"record: {many} queries rendered, {cached} from the cache (6 payments: {few}); "
        f"filtered: {filtered}; detail: {detail}"
    )


# --- Ownership -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "of"),
    [
        ("payment-detail", "get", "payment"),
        ("record-row", "get", "payment"),
        ("payment-fallback", "post", "payment"),
        ("pay", "get", "loan"),
        ("pay-confirm", "post", "loan"),
    ],
)
def test_another_borrowers_ids_give_404_on_every_view(
    signed_in, make_loan, name: str, method: str, of: str
) -> None:
    foreign_loan = make_loan()
    foreign_payment, _ = open_attempt(foreign_loan, "10.00", T0)
    arg = foreign_payment.public_id if of == "payment" else foreign_loan.pk
    data = {"method": PaymentMethodType.ALIPAY_BALANCE.value, "attempts_seen": "1"}
    response = getattr(signed_in, method)(
        reverse(name, args=[arg]), data if method == "post" else {}
    )
    assert response.status_code == 404
    assert Payment.objects.filter(loan=foreign_loan).count() == 1  # nothing was created


def test_unknown_payment_id_is_404_and_visitors_are_sent_to_sign_in(client, signed_in) -> None:
    assert signed_in.get(reverse("payment-detail", args=[uuid.uuid4()])).status_code == 404
    signed_in.logout()
    for url in (reverse("record"), reverse("notices"), reverse("pay", args=[1])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


# --- A payment's detail and its live status --------------------------------------------


def test_detail_tells_the_timeline_in_plain_words(signed_in, loan) -> None:
    payment = pay(loan, "8606.64", T0)
    response = signed_in.get(reverse("payment-detail", args=[payment.public_id]))
    steps = page_text(response)
    assert "已提交银行 " in steps
    assert "银行确认已收到款项" in steps
    assert "已到账并入账第1期" in steps
    assert steps.index("已提交银行") < steps.index("银行确认已收到款项") < steps.index("已到账")
    assert "hx-trigger" not in page_html(response)  # final: nothing polls


def test_processing_detail_polls_with_backoff_and_stops_when_final(signed_in, loan) -> None:
    payment, attempt = open_attempt(loan, "100.00", T0)
    url = reverse("payment-detail", args=[payment.public_id])

    page = signed_in.get(url)
    assert f'hx-get="{url}?poll=0"' in page_html(page)
    assert 'hx-trigger="load delay:2s"' in page_html(page)
    assert "等待银行确认（通常5分钟内）" in page_text(page)

    fragment = signed_in.get(url, {"poll": "2"}, HTTP_HX_REQUEST="true")
    assert "<html" not in page_html(fragment)  # just the live partial
    assert "?poll=3" in page_html(fragment)
    assert 'hx-trigger="load delay:16s"' in page_html(fragment)

    report(attempt, AttemptStatus.SUCCEEDED, T0 + timedelta(minutes=2))
    fragment = signed_in.get(url, {"poll": "3"}, HTTP_HX_REQUEST="true")
    assert "✓ 成功" in page_text(fragment)
    assert "hx-trigger" not in page_html(fragment)  # polling stops at a final state


def test_poll_delays_double_and_are_capped() -> None:
    assert [poll_delay(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert max(poll_delay(n) for n in range(50)) == MAX_POLL_SECONDS


def test_a_poll_asks_the_channel_and_finds_a_lost_callback(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    card = bind_card(borrower)
    portal_channels.sandbox.control("unionpay/faults", {"drop_callbacks": 1.0})
    response = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, Decimal("100.00"))
    payment = Payment.objects.get(borrower=borrower)
    assert response["Location"] == reverse("payment-detail", args=[payment.public_id])
    assert payment.status == PaymentStatus.PROCESSING
    [order] = portal_channels.sandbox.sandbox.ledger.orders("unionpay")
    assert order.card_token == f"{{token={card.card_token}}}"  # the bound card was debited

    row_url = reverse("record-row", args=[payment.public_id])
    row = signed_in.get(row_url, {"poll": "1"}, HTTP_HX_REQUEST="true")

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED  # the query found the debit
    assert "✓ 成功" in page_text(row)
    assert "hx-trigger" not in page_html(row)


# --- Paying ----------------------------------------------------------------------------


def _confirm(
    client: Any, loan: Loan, method: PaymentMethodType, amount: Decimal, key: str = ""
) -> Any:
    return client.post(
        reverse("pay-confirm", args=[loan.pk]),
        {"amount": str(amount), "method": method.value, "idempotency_key": key or uuid.uuid4().hex},
    )


def test_pay_page_offers_the_installment_then_every_method_with_reasons(
    signed_in, loan, borrower
) -> None:
    first = loan.installments.order_by("number").first()
    owed = first.total_due

    step1 = page_text(signed_in.get(reverse("pay", args=[loan.pk])))
    assert "第 1 期" in step1
    assert f"¥{owed:,.2f}" in step1

    step2 = signed_in.get(reverse("pay", args=[loan.pk]), {"choice": "next"})
    assert 'name="idempotency_key"' in page_html(step2)
    assert f'value="{owed}"' in page_html(step2)
    html = page_text(step2)
    assert "推荐" in html
    # Every method is listed; the card method without a bound card says why and what to do.
    for label in ("支付宝", "微信支付", "银行卡代扣"):
        assert label in html
    assert "尚未绑定代扣银行卡" in html


def test_the_amount_step_offers_early_settlement_and_leads_to_its_quote(signed_in, loan) -> None:
    step1 = signed_in.get(reverse("pay", args=[loan.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert 'value="settle"' in page_html(step1)
    assert "Settle the whole loan early" in page_text(step1)

    chosen = signed_in.get(reverse("pay", args=[loan.pk]), {"choice": "settle"})
    assert chosen.status_code == 302
    assert chosen["Location"] == reverse("settlement", args=[loan.pk])

    # An amount typed, then settling chosen: asked, never silently dropped.
    both = signed_in.get(
        reverse("pay", args=[loan.pk]),
        {"choice": "settle", "custom_amount": "500.00"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert both.status_code == 200
    assert 'choose "Another amount"; or clear it.' in page_text(both).replace("&quot;", '"')


def test_custom_amount_is_checked_with_a_field_error(signed_in, loan) -> None:
    html = page_text(
        signed_in.get(
            reverse("pay", args=[loan.pk]), {"choice": "custom", "custom_amount": "1.234"}
        )
    )
    assert "最多两位小数" in html
    html = page_text(
        signed_in.get(
            reverse("pay", args=[loan.pk]), {"choice": "custom", "custom_amount": "99999999"}
        )
    )
    assert "这笔贷款尚需还款最多" in html


def test_withholding_paid_through_the_sandbox_ends_succeeded_after_the_callback(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    bind_card(borrower)
    owed = loan.installments.order_by("number").first().total_due

    response = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, owed)

    payment = Payment.objects.get(borrower=borrower)
    assert response.status_code == 302
    assert response["Location"] == reverse("payment-detail", args=[payment.public_id])
    assert payment.status == PaymentStatus.PROCESSING
    html = page_text(signed_in.get(response["Location"]))
    assert "确认中" in html
    assert "等待银行确认（通常5分钟内）" in html

    [ack] = portal_channels.relay(expected=1)
    assert ack.status_code == 200

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    html = page_text(signed_in.get(reverse("payment-detail", args=[payment.public_id])))
    assert "✓ 成功" in html
    assert "已到账并入账第1期" in html


def test_alipay_sends_the_borrower_to_the_checkout_page(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    response = _confirm(signed_in, loan, PaymentMethodType.ALIPAY_BALANCE, Decimal("100.00"))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{portal_channels.sandbox.url}/alipay/gateway.do?")
    payment = Payment.objects.get(borrower=borrower)
    # The detail page keeps the way back to the checkout while the order is open.
    html = page_text(signed_in.get(reverse("payment-detail", args=[payment.public_id])))
    assert "继续支付" in html


def test_double_submit_gives_one_payment_and_one_charge(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    bind_card(borrower)
    key = uuid.uuid4().hex
    first = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, Decimal("100.00"), key)
    second = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, Decimal("100.00"), key)

    assert first["Location"] == second["Location"]
    assert Payment.objects.filter(borrower=borrower).count() == 1
    assert PaymentAttempt.objects.filter(loan=loan).count() == 1
    assert portal_channels.sandbox.sandbox.ledger.requests["unionpay.debits"] == 1


def test_a_confirm_without_a_method_or_with_a_forged_amount_is_refused(signed_in, loan) -> None:
    url = reverse("pay-confirm", args=[loan.pk])
    key = uuid.uuid4().hex
    no_method = signed_in.post(url, {"amount": "100.00", "idempotency_key": key})
    assert no_method.status_code == 400
    assert "该字段是必填项" in page_text(no_method)
    forged = signed_in.post(
        url, {"amount": "9999999.00", "method": "alipay_balance", "idempotency_key": key}
    )
    assert forged.status_code == 302
    assert forged["Location"] == reverse("pay", args=[loan.pk])
    assert not Payment.objects.filter(loan=loan).exists()


def test_an_unavailable_method_is_refused_with_its_reason_and_nothing_is_created(
    signed_in, loan, borrower
) -> None:
    response = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, Decimal("100.00"))
    assert response.status_code == 409
    assert "尚未绑定代扣银行卡" in page_text(response)
    assert not Payment.objects.filter(borrower=borrower).exists()


def test_channel_down_offers_the_next_method_with_one_tap(
    signed_in, loan, borrower, portal_channels: PortalChannels
) -> None:
    bind_card(borrower)
    portal_channels.sandbox.control("unionpay/faults", {"down": True})

    response = _confirm(signed_in, loan, PaymentMethodType.BANK_DEBIT_CARD, Decimal("100.00"))

    payment = Payment.objects.get(borrower=borrower)
    assert payment.status == PaymentStatus.FAILED
    detail = signed_in.get(response["Location"])
    html = page_text(detail)
    assert "支付渠道暂时无法连接" in html  # the reason, in words
    assert "换一种方式支付" in html
    # One tap on the next channel; the one that could not be reached is explained, not
    # offered again while it is down.
    offered = re.findall(r'name="method" value="(\w+)"', page_html(detail))
    assert offered[0] == "alipay_balance"
    assert "bank_debit_card" not in offered
    assert "该渠道当前出现故障" in html  # why the bank card is not offered
    assert "改用支付宝（" in html

    tapped = signed_in.post(
        reverse("payment-fallback", args=[payment.public_id]),
        {"method": "alipay_balance", "attempts_seen": "1"},
    )
    assert tapped.status_code == 302
    assert tapped["Location"].startswith(f"{portal_channels.sandbox.url}/alipay/gateway.do?")
    again = signed_in.post(
        reverse("payment-fallback", args=[payment.public_id]),
        {"method": "alipay_balance", "attempts_seen": "1"},
    )
    assert again["Location"] == reverse("payment-detail", args=[payment.public_id])
    assert [a.channel for a in payment.attempts.order_by("id")] == ["unionpay", "alipay"]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PROCESSING


def test_no_fallback_is_offered_while_an_attempt_may_still_take_money(signed_in, loan) -> None:
    payment, attempt = open_attempt(loan, "100.00", T0)
    report(attempt, AttemptStatus.UNKNOWN, T0)
    html = page_text(signed_in.get(reverse("payment-detail", args=[payment.public_id])))
    assert "换一种方式支付" not in html
    assert "不会重复扣款" in html


# --- Messages --------------------------------------------------------------------------


@dataclass
class FakeProvider:
    name: str
    channel: str
    fail: bool = False
    sent: list[str] = field(default_factory=list)

    def send(self, *, to: Any, text: str, reference: str, **context: Any) -> Sent:
        if self.fail:
            raise ProviderError("gateway down")
        self.sent.append(text)
        return Sent(message_id=f"{self.name}-{len(self.sent)}", delivered=self.channel == "push")


def test_messages_show_each_notice_with_its_delivery_status_per_channel(
    signed_in, loan, make_loan
) -> None:
    pay(loan, "100.00", T0)
    pay(make_loan(), "100.00", T0)  # someone else's notice
    sms, push = FakeProvider("sms-x", "sms", fail=True), FakeProvider("push-x", "push")
    for notice_id in notices_claim(now=T0):
        notice_dispatch(notice_id=notice_id, now=T0, providers={"sms": sms, "push": push}.get)
    assert Delivery.objects.filter(channel=DeliveryChannel.IN_APP).count() == 2

    response = signed_in.get(reverse("notices"))
    html = page_text(response)

    assert page_html(response).count('class="card notice-item') == 1
    assert "短信: 失败" in html
    assert "推送: 已送达" in html
    assert "站内消息: 已送达" in html
