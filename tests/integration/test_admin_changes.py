"""Admin edits of operating settings: they take effect at once and every one is audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone, translation

from notifications.models import NoticeTemplate
from repayments.domain.availability import Reason
from repayments.models import (
    AuditEntry,
    ChannelSetting,
    InboundCallbackRecord,
    Loan,
    LoanProduct,
    User,
)
from repayments.services.audit import audit_verify
from repayments.services.methods import payment_choice_for

pytestmark = pytest.mark.django_db


def _last_entry(action: str) -> AuditEntry:
    return AuditEntry.objects.filter(action=action).latest("id")


def _channel_form(setting: ChannelSetting, **overrides: Any) -> dict[str, Any]:
    data = {
        "is_enabled": "on" if setting.is_enabled else "",
        "priority": setting.priority,
        "single_payment_limit": setting.single_payment_limit,
        "maintenance_starts_at_0": "",
        "maintenance_starts_at_1": "",
        "maintenance_ends_at_0": "",
        "maintenance_ends_at_1": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def _options(loan: Loan) -> dict[str, Any]:
    with translation.override("en"):
        # A fresh read, as the next page load would do.
        fresh = Loan.objects.select_related("product").get(pk=loan.pk)
        choice = payment_choice_for(loan=fresh, amount="100.00", now=timezone.now())
    return {o.option.method_type: o for o in choice.options}


def test_maintenance_switched_on_in_admin_shows_at_once_in_the_method_list(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    assert _options(loan)["alipay_balance"].option.available
    alipay = ChannelSetting.objects.get(channel="alipay")
    expected_end = timezone.localtime() + timedelta(hours=2)
    end_date, end_time = f"{expected_end:%Y-%m-%d}", f"{expected_end:%H:%M:00}"

    response = admin_client.post(
        f"/admin/repayments/channelsetting/{alipay.pk}/change/",
        _channel_form(
            alipay,
            start_maintenance_now="on",
            maintenance_ends_at_0=end_date,
            maintenance_ends_at_1=end_time,
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    option = _options(loan)["alipay_balance"]
    assert not option.option.available
    assert option.option.reason == Reason.CHANNEL_MAINTENANCE
    assert f"Under maintenance until {end_date} {end_time[:5]}" in option.message
    assert _options(loan)["wechatpay_balance"].option.available
    entry = _last_entry("channelsetting.changed")
    assert entry.actor_label == "admin"
    assert set(entry.data["changes"]) >= {"maintenance_starts_at", "maintenance_ends_at"}
    assert entry.data["changes"]["maintenance_ends_at"]["from"] is None


def test_ending_maintenance_from_the_list_brings_the_method_back(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    now = timezone.now()
    ChannelSetting.objects.filter(channel="wechatpay").update(
        maintenance_starts_at=now - timedelta(minutes=5),
        maintenance_ends_at=now + timedelta(hours=3),
    )
    wechat = ChannelSetting.objects.get(channel="wechatpay")
    assert _options(loan)["wechatpay_balance"].option.reason == Reason.CHANNEL_MAINTENANCE

    response = admin_client.post(
        "/admin/repayments/channelsetting/",
        {"action": "end_maintenance", "_selected_action": [wechat.pk]},
    )

    assert response.status_code == 302
    assert _options(loan)["wechatpay_balance"].option.available
    entry = _last_entry("channelsetting.maintenance_ended")
    assert entry.actor_label == "admin"
    assert entry.object_id == str(wechat.pk)


def test_maintenance_without_an_expected_end_is_refused(admin_client: Client) -> None:
    unionpay = ChannelSetting.objects.get(channel="unionpay")
    before = AuditEntry.objects.count()
    with translation.override("en"):
        response = admin_client.post(
            f"/admin/repayments/channelsetting/{unionpay.pk}/change/",
            _channel_form(unionpay, start_maintenance_now="on"),
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert response.status_code == 200
    assert "Give the expected end of the maintenance window." in response.content.decode()
    unionpay.refresh_from_db()
    assert unionpay.maintenance_starts_at is None
    assert AuditEntry.objects.count() == before


def test_priority_and_limit_edited_in_the_list_are_audited(admin_client: Client) -> None:
    settings = list(ChannelSetting.objects.order_by("priority", "channel"))
    data: dict[str, Any] = {
        "form-TOTAL_FORMS": len(settings),
        "form-INITIAL_FORMS": len(settings),
        "_save": "Save",
    }
    for i, setting in enumerate(settings):
        data[f"form-{i}-id"] = setting.pk
        data[f"form-{i}-is_enabled"] = "on"
        data[f"form-{i}-priority"] = setting.priority
        data[f"form-{i}-single_payment_limit"] = setting.single_payment_limit
    data["form-0-priority"] = 99
    data["form-0-single_payment_limit"] = "1234.00"

    response = admin_client.post("/admin/repayments/channelsetting/", data)

    assert response.status_code == 302
    first = ChannelSetting.objects.get(pk=settings[0].pk)
    assert (first.priority, str(first.single_payment_limit)) == (99, "1234.00")
    changes = _last_entry("channelsetting.changed").data["changes"]
    assert changes["priority"] == {"from": settings[0].priority, "to": 99}
    assert changes["single_payment_limit"]["to"] == "1234.00"


def test_product_rules_edited_in_admin_are_audited_with_before_and_after(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    product = LoanProduct.objects.get(pk=loan.product_id)
    allowed = [*product.allowed_method_types, "alipay_huabei"]
    form = {
        "code": product.code,
        "name": product.name,
        "is_active": "on",
        "amortization_method": product.amortization_method,
        "annual_rate_percent": product.annual_rate_percent,
        "term_months": product.term_months,
        "monthly_fee": product.monthly_fee,
        "early_settlement_fee_percent": product.early_settlement_fee_percent,
        "grace_days": 5,
        "penalty_daily_rate_percent": product.penalty_daily_rate_percent,
        "allocation_order": '["penalty", "fee", "interest", "principal"]',
        "allowed_method_types": allowed,
    }
    assert not _options(loan)["alipay_huabei"].option.available

    response = admin_client.post(f"/admin/repayments/loanproduct/{product.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert _options(loan)["alipay_huabei"].option.available
    entry = _last_entry("loanproduct.changed")
    assert entry.actor_label == "admin"
    assert entry.data["changes"]["grace_days"] == {"from": 3, "to": 5}
    assert "alipay_huabei" in entry.data["changes"]["allowed_method_types"]["to"]
    assert "alipay_huabei" not in entry.data["changes"]["allowed_method_types"]["from"]
    assert audit_verify() is None


def test_role_change_and_password_reset_of_a_user_are_audited(
    admin_client: Client, make_borrower: Any
) -> None:
    agent_role, _ = Group.objects.get_or_create(name="support_agent")
    user = User.objects.create_user("clerk", "x-Passw0rd-long", full_name="Clerk", is_staff=True)

    changed = admin_client.post(
        f"/admin/repayments/user/{user.pk}/change/",
        {
            "username": "clerk",
            "full_name": "Clerk",
            "is_active": "on",
            "is_staff": "on",
            "groups": [agent_role.pk],
        },
    )
    password = admin_client.post(
        f"/admin/repayments/user/{user.pk}/password/",
        {"password1": "An0ther-long-pass", "password2": "An0ther-long-pass"},
    )

    assert (changed.status_code, password.status_code) == (302, 302)
    roles = _last_entry("user.changed").data["changes"]["groups"]
    assert roles == {"from": [], "to": ["support_agent"]}
    entry = _last_entry("user.password_changed")
    assert entry.actor_label == "admin"
    assert "An0ther" not in str(entry.data)


def test_users_are_deactivated_not_deleted(admin_client: Client, make_borrower: Any) -> None:
    borrower = make_borrower()
    response = admin_client.post(f"/admin/repayments/user/{borrower.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert User.objects.filter(pk=borrower.pk).exists()


def test_notice_template_edits_are_audited_and_broken_text_refused(admin_client: Client) -> None:
    fields = {"kind": "payment_succeeded", "language": "en", "channel": "sms"}
    broken = admin_client.post(
        "/admin/notifications/noticetemplate/add/",
        {**fields, "text": "Paid {amount"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert broken.status_code == 200
    assert "cannot be filled in" in broken.content.decode()
    assert not NoticeTemplate.objects.exists()

    added = admin_client.post(
        "/admin/notifications/noticetemplate/add/", {**fields, "text": "Paid {amount}."}
    )
    template = NoticeTemplate.objects.get()
    deleted = admin_client.post(
        f"/admin/notifications/noticetemplate/{template.pk}/delete/", {"post": "yes"}
    )

    assert (added.status_code, deleted.status_code) == (302, 302)
    created = _last_entry("noticetemplate.created")
    assert created.data["changes"]["text"] == {"to": "Paid {amount}."}
    assert _last_entry("noticetemplate.deleted").actor_label == "admin"
    assert audit_verify() is None


def test_staff_added_in_admin_is_audited_without_the_password(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/repayments/user/add/",
        {
            "username": "newclerk",
            "full_name": "New Clerk",
            "role": "support_agent",
            "password1": "Sekr1t-long-pass",
            "password2": "Sekr1t-long-pass",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    clerk = User.objects.get(username="newclerk")
    assert clerk.is_staff
    assert not clerk.is_superuser
    assert list(clerk.groups.values_list("name", flat=True)) == ["support_agent"]
    entry = _last_entry("user.created")
    assert entry.actor_label == "admin"
    assert entry.data["changes"]["username"] == {"to": "newclerk"}
    assert entry.data["changes"]["role"] == {"to": "support_agent"}
    assert "Sekr1t" not in str(entry.data)


def test_replaying_a_quarantined_callback_from_admin_is_audited(
    admin_client: Client, channel_keys: Any
) -> None:
    record = InboundCallbackRecord.objects.create(
        channel="alipay", body=b"garbled=1", received_at=timezone.now(), status="quarantined"
    )
    response = admin_client.post(
        "/admin/repayments/inboundcallbackrecord/",
        {"action": "replay", "_selected_action": [record.pk]},
    )
    assert response.status_code == 302
    entry = _last_entry("callbacks.replayed")
    assert entry.actor_label == "admin"
    assert entry.data["ids"] == [record.pk]


def test_bulk_delete_of_templates_audits_each_one(admin_client: Client) -> None:
    templates = [
        NoticeTemplate.objects.create(kind="overdue", language=lang, channel="sms", text="x")
        for lang in ("zh-hans", "en")
    ]
    response = admin_client.post(
        "/admin/notifications/noticetemplate/",
        {
            "action": "delete_selected",
            "_selected_action": [t.pk for t in templates],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert not NoticeTemplate.objects.exists()
    deleted = AuditEntry.objects.filter(action="noticetemplate.deleted")
    assert sorted(deleted.values_list("object_id", flat=True)) == sorted(
        str(t.pk) for t in templates
    )


def test_template_page_previews_the_text_and_shows_the_built_in_one(
    admin_client: Client,
) -> None:
    template = NoticeTemplate.objects.create(
        kind="payment_succeeded", language="en", channel="sms", text="Paid {amount} {mystery}."
    )
    page = admin_client.get(
        f"/admin/notifications/noticetemplate/{template.pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Paid ¥2,967.99 {mystery}." in page  # unknown placeholders stay visible
    assert "[Anxin Repay] Your car-loan repayment of {amount}" in page
