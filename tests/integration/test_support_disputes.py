"""The dispute domain: opening with a screenshot, replies and internal notes, the SLA
clock, resolution with its notice, and auto-resolution when the payment is confirmed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from notifications.models import Notice, NoticeKind
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.models import (
    AuditEntry,
    Dispute,
    DisputeCategory,
    DisputeMessage,
    DisputeResolution,
    DisputeStatus,
    EventKind,
    Loan,
    Role,
    User,
)
from repayments.services.audit import audit_verify
from repayments.services.disputes import (
    DisputeClosed,
    InvalidDispute,
    dispute_assign,
    dispute_open,
    dispute_reply,
    dispute_resolve,
    dispute_thread_for_borrower,
    disputes_of,
)
from repayments.services.errors import NotFound
from repayments.services.payments import Outcome, attempt_record_outcome
from repayments.services.users import staff_create
from tests.integration.helpers import open_attempt, report

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64


@pytest.fixture(autouse=True)
def media_in_tmp(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def agent(now: datetime) -> User:
    return staff_create(
        username="agent1",
        password="demo12345-Test",
        role=Role.SUPPORT_AGENT,
        full_name="Agent One",
        now=now,
    )


def _dispute_notices(dispute: Dispute) -> list[str]:
    rows = Notice.objects.filter(
        subject_type="dispute", subject_id=dispute.pk, kind=NoticeKind.DISPUTE_UPDATE
    ).order_by("id")
    return [row.params["event"] for row in rows]


def _open(loan: Loan, now: datetime, **kwargs: Any) -> Dispute:
    fields: dict[str, Any] = {
        "category": DisputeCategory.PAID_NOT_SHOWN,
        "description": "I paid with Alipay but it does not show",
    }
    fields.update(kwargs)
    return dispute_open(borrower=loan.borrower, loan=loan, now=now, **fields)


def test_opening_links_the_payment_audits_and_sends_a_received_notice(
    make_loan: Callable[..., Loan], now: datetime
) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", now)
    dispute = _open(loan, now, trade_no=attempt.out_trade_no)
    assert dispute.payment == payment
    assert dispute.status == DisputeStatus.OPEN
    assert len(dispute.case_number) == 8
    assert _dispute_notices(dispute) == ["received"]
    notice = Notice.objects.get(subject_type="dispute", subject_id=dispute.pk)
    assert notice.recipient_id == loan.borrower_id
    assert notice.params["case"] == dispute.case_number
    assert AuditEntry.objects.filter(action="dispute.opened", object_id=str(dispute.pk)).exists()
    assert audit_verify() is None


@pytest.mark.parametrize(("content", "extension"), [(PNG, "png"), (JPEG, "jpg"), (WEBP, "webp")])
def test_an_image_screenshot_is_stored_under_our_own_name(
    make_loan: Callable[..., Loan],
    now: datetime,
    media_in_tmp: Path,
    content: bytes,
    extension: str,
) -> None:
    upload = SimpleUploadedFile("../../evil name.exe", content, content_type="text/plain")
    dispute = _open(make_loan(), now, screenshot=upload)
    dispute.refresh_from_db()
    assert dispute.screenshot.name == f"disputes/2026/01/{dispute.public_id.hex}.{extension}"
    assert (media_in_tmp / dispute.screenshot.name).read_bytes() == content


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<?php echo 1; ?>", "must be a PNG, JPEG or WebP image"),
        (b"GIF89a" + b"\x00" * 20, "must be a PNG, JPEG or WebP image"),
        (PNG + b"\x00" * (5 * 1024 * 1024), "at most 5 MB"),
    ],
)
def test_a_bad_screenshot_is_refused_and_nothing_is_written(
    make_loan: Callable[..., Loan], now: datetime, media_in_tmp: Path, content: bytes, message: str
) -> None:
    loan = make_loan()
    upload = SimpleUploadedFile("shot.png", content, content_type="image/png")
    with translation.override("en"), pytest.raises(InvalidDispute, match=message) as raised:
        _open(loan, now, screenshot=upload)
    assert raised.value.field == "screenshot"
    assert not Dispute.objects.filter(loan=loan).exists()
    assert not Notice.objects.filter(subject_type="dispute").exists()
    assert not media_in_tmp.exists() or not any(media_in_tmp.rglob("*.*"))


def test_a_failed_save_removes_the_stored_screenshot(
    make_loan: Callable[..., Loan], now: datetime, media_in_tmp: Path, monkeypatch: Any
) -> None:
    def broken_audit(**kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("repayments.services.disputes.audit_append", broken_audit)
    loan = make_loan()
    with pytest.raises(RuntimeError):
        _open(loan, now, screenshot=SimpleUploadedFile("a.png", PNG))
    assert not Dispute.objects.filter(loan=loan).exists()
    assert not any(media_in_tmp.rglob("*.png"))


def test_a_staff_reply_starts_handling_and_notifies_but_an_internal_note_does_not(
    make_loan: Callable[..., Loan], now: datetime, agent: User
) -> None:
    dispute = _open(make_loan(), now)
    later = now + timedelta(minutes=30)
    dispute_reply(
        dispute=dispute, author=agent, body="Checking with Alipay", now=later, internal=True
    )
    dispute.refresh_from_db()
    assert dispute.first_response_at is None  # an internal note is no answer
    assert dispute.status == DisputeStatus.OPEN
    assert _dispute_notices(dispute) == ["received"]

    reply_at = later + timedelta(minutes=5)
    dispute_reply(dispute=dispute, author=agent, body="We are checking", now=reply_at)
    assert dispute.first_response_at == reply_at  # the caller's instance is refreshed
    assert dispute.status == DisputeStatus.IN_PROGRESS
    assert _dispute_notices(dispute) == ["received", "updated"]
    thread = dispute_thread_for_borrower(dispute)
    assert [m.body for m in thread] == ["We are checking"]
    assert AuditEntry.objects.filter(action="dispute.note_added", actor=agent).count() == 1


def test_the_borrower_can_reply_but_not_write_internal_notes_or_on_anothers_case(
    make_loan: Callable[..., Loan], make_borrower: Callable[..., User], now: datetime
) -> None:
    loan = make_loan()
    dispute = _open(loan, now)
    message = dispute_reply(dispute=dispute, author=loan.borrower, body="Any news?", now=now)
    assert not message.internal
    dispute.refresh_from_db()
    assert dispute.first_response_at is None  # the borrower's own message is no answer
    with pytest.raises(NotFound):
        dispute_reply(dispute=dispute, author=loan.borrower, body="x", now=now, internal=True)
    with pytest.raises(NotFound):
        dispute_reply(dispute=dispute, author=make_borrower(), body="me too", now=now)
    with pytest.raises(InvalidDispute):
        dispute_reply(dispute=dispute, author=loan.borrower, body="   ", now=now)
    assert DisputeMessage.objects.filter(dispute=dispute).count() == 1


def test_resolving_closes_the_case_once_and_tells_the_borrower(
    make_loan: Callable[..., Loan], now: datetime, agent: User
) -> None:
    loan = make_loan()
    dispute = _open(loan, now)
    done_at = now + timedelta(hours=1)
    dispute_resolve(
        dispute=dispute,
        actor=agent,
        resolution=DisputeResolution.PAID_CONFIRMED,
        note="Confirmed with Alipay; posted to installment 1.",
        now=done_at,
    )
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.RESOLVED
    assert dispute.resolution == DisputeResolution.PAID_CONFIRMED
    assert dispute.resolved_at == done_at
    assert dispute.first_response_at == done_at
    assert _dispute_notices(dispute) == ["received", "paid_confirmed"]
    assert dispute_thread_for_borrower(dispute)[-1].author == agent
    assert AuditEntry.objects.filter(action="dispute.resolved", actor=agent).count() == 1
    with pytest.raises(DisputeClosed):
        dispute_resolve(
            dispute=dispute, actor=agent, resolution="rejected", note="again", now=done_at
        )
    with pytest.raises(DisputeClosed):
        dispute_reply(dispute=dispute, author=loan.borrower, body="thanks", now=done_at)


def test_a_rejection_needs_a_note_and_closes_as_rejected(
    make_loan: Callable[..., Loan], now: datetime, agent: User
) -> None:
    dispute = _open(make_loan(), now)
    with pytest.raises(InvalidDispute):
        dispute_resolve(dispute=dispute, actor=agent, resolution="rejected", note=" ", now=now)
    with pytest.raises(InvalidDispute):
        dispute_resolve(dispute=dispute, actor=agent, resolution="forgiven", note="x", now=now)
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN
    dispute_resolve(
        dispute=dispute, actor=agent, resolution="rejected", note="No such payment.", now=now
    )
    dispute.refresh_from_db()
    assert (dispute.status, dispute.resolution_note) == (DisputeStatus.REJECTED, "No such payment.")


def test_assignment_goes_to_staff_only_and_is_audited(
    make_loan: Callable[..., Loan], make_borrower: Callable[..., User], now: datetime, agent: User
) -> None:
    dispute = _open(make_loan(), now)
    with pytest.raises(InvalidDispute):
        dispute_assign(dispute=dispute, assignee=make_borrower(), actor=agent, now=now)
    dispute_assign(dispute=dispute, assignee=agent, actor=agent, now=now)
    dispute.refresh_from_db()
    assert dispute.assigned_to == agent
    entry = AuditEntry.objects.get(action="dispute.assigned")
    assert entry.data == {"case": dispute.case_number, "from": None, "to": "agent1"}


def test_a_late_success_resolves_the_paid_not_shown_case_with_a_system_note(
    make_loan: Callable[..., Loan], now: datetime
) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", now)
    report(attempt, AttemptStatus.FAILED, now + timedelta(minutes=1))
    paid = _open(loan, now + timedelta(minutes=5), payment=payment)
    other = _open(loan, now, category=DisputeCategory.AMOUNT_MISMATCH, payment=payment)

    late = now + timedelta(hours=2)
    report(attempt, AttemptStatus.SUCCEEDED, late)

    payment.refresh_from_db()
    paid.refresh_from_db()
    other.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert (paid.status, paid.resolution, paid.resolved_at) == (
        DisputeStatus.RESOLVED,
        DisputeResolution.PAID_CONFIRMED,
        late,
    )
    system_note = paid.messages.get(author__isnull=True)
    assert not system_note.internal
    assert _dispute_notices(paid) == ["received", "paid_confirmed"]
    assert other.status == DisputeStatus.OPEN  # an amount question still needs a person
    entry = AuditEntry.objects.get(action="dispute.resolved", object_id=str(paid.pk))
    assert entry.actor is None
    assert entry.actor_label == "system"


def test_a_case_that_only_named_the_trade_number_is_linked_and_resolved(
    make_loan: Callable[..., Loan], now: datetime
) -> None:
    loan = make_loan()
    payment, attempt = open_attempt(loan, "100.00", now)
    # The borrower typed a number we did not know yet (the channel's own).
    dispute = _open(loan, now, trade_no="2026010522001400001234567890")
    assert dispute.payment is None
    attempt_record_outcome(
        attempt_id=attempt.pk,
        outcome=Outcome(
            status=AttemptStatus.SUCCEEDED,
            source=EventKind.CALLBACK,
            accepted_at=now,
            channel_trade_no="2026010522001400001234567890",
        ),
        now=now + timedelta(minutes=1),
    )
    dispute.refresh_from_db()
    assert dispute.payment == payment
    assert dispute.status == DisputeStatus.RESOLVED


def test_disputes_of_lists_own_cases_with_the_last_visible_reply(
    make_loan: Callable[..., Loan], now: datetime, agent: User
) -> None:
    loan, stranger_loan = make_loan(), make_loan()
    mine = _open(loan, now)
    _open(stranger_loan, now)
    replied = now + timedelta(minutes=10)
    dispute_reply(dispute=mine, author=agent, body="Looking", now=replied)
    dispute_reply(
        dispute=mine, author=agent, body="note", now=replied + timedelta(1), internal=True
    )
    rows = list(disputes_of(loan.borrower))
    assert [row.pk for row in rows] == [mine.pk]
    assert rows[0].last_reply_at == replied  # type: ignore[attr-defined]
