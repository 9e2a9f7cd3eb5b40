"""Due-date reminders, overdue alerts, quiet hours and the template preview."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from django.utils import timezone

from notifications.admin import NoticeTemplateAdmin
from notifications.models import Notice, NoticeKind, NoticeStatus, NoticeTemplate
from notifications.models import NotificationPreference as Preference
from notifications.preferences import after_quiet_hours
from notifications.services import notice_dispatch, notices_claim, render
from repayments.services.reminders import reminders_enqueue
from tests.conftest import at
from tests.integration.helpers import pay

pytestmark = pytest.mark.django_db


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def test_reminders_go_three_days_and_one_day_before_and_only_once(make_loan) -> None:
    loan = make_loan(start_date=date(2026, 1, 5))  # first installment due 2026-02-05
    first_due = loan.installments.get(number=1).due_date
    today = date.fromordinal(first_due.toordinal() - 3)
    now = local(today, 10)
    assert reminders_enqueue(today=today, now=now) == 1
    assert reminders_enqueue(today=today, now=now) == 0  # idempotent
    notice = Notice.objects.get(kind=NoticeKind.DUE_REMINDER)
    assert notice.not_before == now
    text = render(notice)
    assert "第1期" in text
    assert first_due.isoformat() in text
    day_before = date.fromordinal(first_due.toordinal() - 1)
    assert reminders_enqueue(today=day_before, now=local(day_before, 10)) == 1


def test_a_reminder_for_an_installment_paid_meanwhile_is_not_sent(make_loan) -> None:
    loan = make_loan(start_date=date(2026, 1, 5))
    installment = loan.installments.get(number=1)
    today = date.fromordinal(installment.due_date.toordinal() - 3)
    reminders_enqueue(today=today, now=local(today, 10))
    owed = sum(installment.outstanding().values())
    pay(loan, owed, local(today, 11))
    [notice_id] = [n.pk for n in Notice.objects.filter(kind=NoticeKind.DUE_REMINDER)]
    notices_claim(now=local(today, 12))
    result = notice_dispatch(notice_id=notice_id, now=local(today, 12), providers=lambda c: None)
    assert result.status == NoticeStatus.SUPERSEDED


def test_overdue_alert_after_the_grace_days_then_weekly(make_loan) -> None:
    loan = make_loan(start_date=date(2026, 1, 5))
    due = loan.installments.get(number=1).due_date
    grace = loan.product.grace_days
    within = date.fromordinal(due.toordinal() + grace)
    assert reminders_enqueue(today=within, now=local(within, 10)) == 0
    after = date.fromordinal(due.toordinal() + grace + 1)
    assert reminders_enqueue(today=after, now=local(after, 10)) == 1
    assert reminders_enqueue(today=after, now=local(after, 10)) == 0
    week_later = date.fromordinal(after.toordinal() + 7)
    assert reminders_enqueue(today=week_later, now=local(week_later, 10)) >= 1
    assert Notice.objects.filter(kind=NoticeKind.OVERDUE).count() == 2


def test_quiet_hours_hold_reminders_until_morning(make_borrower) -> None:
    borrower = make_borrower()
    day = date(2026, 2, 5)
    assert after_quiet_hours(user_id=borrower.pk, at=local(day, 10)) == local(day, 10)
    assert after_quiet_hours(user_id=borrower.pk, at=local(day, 23)) == local(date(2026, 2, 6), 8)
    assert after_quiet_hours(user_id=borrower.pk, at=local(day, 6)) == local(day, 8)
    Preference.objects.create(user=borrower, quiet_start_hour=0, quiet_end_hour=0)
    assert after_quiet_hours(user_id=borrower.pk, at=local(day, 23)) == local(day, 23)


def test_admins_edit_a_template_and_see_it_rendered(make_loan, admin_client) -> None:
    template = NoticeTemplate.objects.create(
        kind=NoticeKind.PAYMENT_SUCCEEDED,
        language="zh-hans",
        channel="sms",
        text="【安心还款】已收到{amount}，{installments}已结清。{unknown}",
    )
    preview = NoticeTemplateAdmin(NoticeTemplate, admin_site=None).preview(template)  # type: ignore[arg-type]
    assert preview == "【安心还款】已收到¥2,967.99，第7期已结清。{unknown}"
    response = admin_client.get(f"/admin/notifications/noticetemplate/{template.pk}/change/")
    assert response.status_code == 200
    assert "¥2,967.99" in response.content.decode()
    payment = pay(make_loan(), "100.00", at(date(2026, 2, 5)))
    notice = Notice.objects.get(subject_id=payment.pk, kind=NoticeKind.PAYMENT_SUCCEEDED)
    assert render(notice) == "【安心还款】已收到¥100.00，第1期已结清。"
