"""Sensitive values in the admin: masked in lists and forms, secrets never shown or editable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from repayments.admin.channels import ChannelSettingForm
from repayments.admin.masking import redact_body
from repayments.models import (
    BoundCard,
    Channel,
    ChannelSetting,
    EventKind,
    InboundCallbackRecord,
    Payment,
    PaymentEvent,
)

pytestmark = pytest.mark.django_db

FULL_CARD = "6222020200112233446"  # passes Luhn: a real-looking full card number


def _page(client: Client, path: str) -> str:
    response = client.get(path, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200, path
    return response.content.decode()


def test_phone_and_id_number_are_masked_in_user_list_and_form(
    admin_client: Client, make_borrower: Any
) -> None:
    borrower = make_borrower(phone="13912345678")
    listing = _page(admin_client, "/admin/repayments/user/")
    form = _page(admin_client, f"/admin/repayments/user/{borrower.pk}/change/")
    for page in (listing, form):
        assert "139****5678" in page
        assert "13912345678" not in page
    assert borrower.id_number_masked in form
    assert 'name="phone"' not in form  # a phone is changed by the borrower, with a code
    assert 'name="id_number_masked"' not in form


def test_bound_cards_show_only_the_last_four_digits(admin_client: Client, make_loan: Any) -> None:
    loan = make_loan()
    card = BoundCard.objects.create(
        borrower=loan.borrower,
        channel=Channel.UNIONPAY,
        card_token="tok-secret-binding-0001",
        card_masked="6222 **** **** 4455",
        bank_name="ICBC",
    )
    listing = _page(admin_client, "/admin/repayments/boundcard/")
    form = _page(admin_client, f"/admin/repayments/boundcard/{card.pk}/change/")
    for page in (listing, form):
        assert "ending 4455" in page
        assert "tok-secret-binding-0001" not in page
    # The list shows the tail only; the page title may use the stored masked form.
    assert "6222" not in listing
    assert 'name="card_token"' not in form


def test_raw_callback_body_is_shown_without_secrets_or_card_numbers(admin_client: Client) -> None:
    body = (
        "out_trade_no=AX123&trade_status=TRADE_SUCCESS&sign=SIGNATURE-VISIBLE"
        f"&accNo={FULL_CARD}&app_secret_key=hunter2&buyer_note=card {FULL_CARD}"
    )
    record = InboundCallbackRecord.objects.create(
        channel=Channel.ALIPAY,
        body=body.encode(),
        headers={"wechatpay-signature": "sig", "authorization": "Bearer abc.def"},
        received_at=timezone.now(),
        status="quarantined",
    )
    page = _page(admin_client, f"/admin/repayments/inboundcallbackrecord/{record.pk}/change/")
    assert "trade_status=TRADE_SUCCESS" in page
    assert "SIGNATURE-VISIBLE" in page
    assert "hunter2" not in page
    assert FULL_CARD not in page
    assert "6222****3446" in page
    assert "Bearer abc.def" not in page


def test_json_callback_body_and_event_details_are_redacted(
    admin_client: Client, make_loan: Any
) -> None:
    loan = make_loan()
    now = timezone.now()
    payment = Payment.objects.create(
        loan=loan, borrower=loan.borrower, amount="10.00", created_at=now, updated_at=now
    )
    event = PaymentEvent.objects.create(
        payment=payment,
        kind=EventKind.REQUEST,
        summary="request",
        data={"tokenPayData": "{token=abc}", "amount": "10.00", "card": FULL_CARD},
        occurred_at=now,
    )
    record = InboundCallbackRecord.objects.create(
        channel=Channel.WECHATPAY,
        body=json.dumps({"resource": {"ciphertext": "CIPHER", "api_key": "k3y"}}).encode(),
        received_at=now,
    )
    event_page = _page(admin_client, f"/admin/repayments/paymentevent/{event.pk}/change/")
    callback_page = _page(
        admin_client, f"/admin/repayments/inboundcallbackrecord/{record.pk}/change/"
    )
    assert "{token=abc}" not in event_page
    assert FULL_CARD not in event_page
    assert "10.00" in event_page
    assert "CIPHER" in callback_page
    assert "k3y" not in callback_page


def test_channel_keys_are_not_editable_from_admin(admin_client: Client) -> None:
    setting = ChannelSetting.objects.get(channel="alipay")
    form = _page(admin_client, f"/admin/repayments/channelsetting/{setting.pk}/change/")
    editable = set(ChannelSettingForm.base_fields)
    assert not {name for name in editable if "key" in name or "secret" in name}
    assert {f.name for f in ChannelSetting._meta.get_fields()} & {"key", "private_key"} == set()
    assert "PRIVATE KEY" not in form


def test_unionpay_personal_fields_are_redacted_and_references_kept() -> None:
    shown = redact_body(
        b"accNo=6222020200112233446&customerInfo=e3Bob25lTm8%3D&phoneNo=13800138000"
        b"&txnTime=20260105100000&queryId=202601051000001234567&signPubKeyCert=CERT"
    ).splitlines()
    assert shown == [
        "accNo=***",
        "customerInfo=***",
        "phoneNo=***",
        "txnTime=20260105100000",
        "queryId=202601051000001234567",
        "signPubKeyCert=CERT",
    ]
