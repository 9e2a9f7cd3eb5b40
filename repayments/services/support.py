"""What support staff do from the console, each step audited with who and why.

Reads (search, the one-view timeline, the dispute queue) live in
``repayments.services.support_timeline``; this module holds the SLA clock and the
actions: query the channel now, resend a confirmation, add an internal note,
request and decide a duplicate-charge refund (maker-checker), and mark a
manual-review attempt as checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from notifications.models import Notice, NoticeKind
from notifications.services import notice_enqueue
from repayments.channels.base import ChannelError
from repayments.domain.errors import DomainError
from repayments.domain.states import AttemptStatus, PaymentStatus
from repayments.domain.workdays import WorkingCalendar
from repayments.models import (
    CalendarDay,
    CalendarDayKind,
    EventKind,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    RefundRequest,
    RefundRequestStatus,
    SupportNote,
    User,
)
from repayments.services.audit import audit_append
from repayments.services.janitor import attempt_query_now, janitor_check
from repayments.services.payment_notices import SUBJECT, payment_notice_params
from repayments.services.routing import (
    AmountMismatch,
    ChannelFactory,
    attempt_query,
    attempt_refund_duplicate,
    default_channel,
)
from repayments.services.timeline import timeline_record

FIRST_RESPONSE_HOURS = 4
REASON_MAX = 1000


# --- The SLA clock -------------------------------------------------------------------


def support_calendar() -> WorkingCalendar:
    """Office hours 09:00-18:00 Beijing time, Monday to Friday, with the public
    holidays and weekend working days kept in admin (a few rows a year)."""
    days = CalendarDay.objects.values_list("day", "kind")
    return WorkingCalendar(
        holidays=frozenset(d for d, kind in days if kind == CalendarDayKind.HOLIDAY),
        extra_working_days=frozenset(d for d, kind in days if kind == CalendarDayKind.WORKING_DAY),
    )


def first_response_due(opened_at: datetime, calendar: WorkingCalendar | None = None) -> datetime:
    """When a case opened at ``opened_at`` must have had its first answer: four working
    hours later. Pass ``calendar`` when computing many (one read for all)."""
    return (calendar or support_calendar()).add_working_hours(opened_at, FIRST_RESPONSE_HOURS)


# --- Errors --------------------------------------------------------------------------


class ReasonRequired(DomainError):
    """Say why: every support action is recorded with its reason."""

    code = "reason_required"


class NotAllowed(DomainError):
    """Your role cannot do this."""

    code = "not_allowed"


class SelfApprovalRefused(DomainError):
    """You cannot decide a refund you requested yourself: another supervisor must."""

    code = "self_approval_refused"


class RefundAlreadyDecided(DomainError):
    """This refund request was already decided."""

    code = "refund_already_decided"


class RefundAlreadyRequested(DomainError):
    """This charge already has a refund request."""

    code = "refund_already_requested"


class NotADuplicateCharge(DomainError):
    """Only a duplicate charge not yet refunded can be refunded from the console."""

    code = "not_a_duplicate_charge"


class NothingToResend(DomainError):
    """Only a confirmed payment has a confirmation to resend."""

    code = "nothing_to_resend"


class NotUnderReview(DomainError):
    """This attempt is not waiting for a manual review."""

    code = "not_under_review"


def _reason(text: str) -> str:
    reason = text.strip()
    if not reason:
        raise ReasonRequired(_("Please give a reason."))
    return reason[:REASON_MAX]


def _audit(action: str, payment: Payment, actor: User, now: datetime, **data: object) -> None:
    audit_append(
        action=f"support.{action}",
        object_type="payment",
        object_id=payment.public_id,
        now=now,
        actor=actor,
        data=dict(data),
    )


# --- Actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryAnswer:
    asked: bool  # False: asked less than a few seconds ago, nothing sent
    status: str  # the attempt's status afterwards
    error: str = ""


def support_query_channel(
    *,
    payment: Payment,
    actor: User,
    reason: str,
    now: datetime,
    channels: ChannelFactory = default_channel,
) -> QueryAnswer:
    """Ask the channel now about the payment's latest attempt and record the answer.

    An open attempt goes through the janitor's rate-limited path; a finished one is
    asked once more, so a "failed" payment the channel did charge is booked.

    :raises ReasonRequired: without a reason.
    :raises NothingToResend: when the payment never reached a channel.
    """
    why = _reason(reason)
    attempt = payment.attempts.order_by("-created_at", "-id").first()
    if attempt is None:
        raise NothingToResend(_("This payment never reached a channel."))
    asked, error = True, ""
    if attempt.is_open:
        asked = attempt_query_now(attempt_id=attempt.pk, now=now, channels=channels)
    else:
        try:
            attempt_query(attempt_id=attempt.pk, now=now, channels=channels)
        except (ChannelError, AmountMismatch) as exc:
            error = str(exc)
    attempt.refresh_from_db()
    with transaction.atomic():
        _audit(
            "channel_queried",
            payment,
            actor,
            now,
            reason=why,
            attempt=attempt.out_trade_no,
            asked=asked,
            status=attempt.status,
            error=error,
        )
    return QueryAnswer(asked=asked, status=attempt.status, error=error)


def support_resend_confirmation(
    *, payment: Payment, actor: User, reason: str, now: datetime
) -> Notice:
    """Send the borrower the confirmation of a succeeded payment once more.

    :raises ReasonRequired: without a reason.
    :raises NothingToResend: when the payment has not succeeded.
    """
    why = _reason(reason)
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status != PaymentStatus.SUCCEEDED:
            raise NothingToResend()
        earlier = Notice.objects.filter(
            subject_type=SUBJECT, subject_id=locked.pk, dedupe_key__contains=":resend-"
        ).count()
        notice = notice_enqueue(
            recipient_id=locked.borrower_id,
            kind=NoticeKind.PAYMENT_SUCCEEDED,
            subject_type_name=SUBJECT,
            subject_id=locked.pk,
            announced_state=PaymentStatus.SUCCEEDED.value,
            episode=f"resend-{earlier + 1}",
            params=payment_notice_params(locked),
            now=now,
        )
        assert notice is not None  # a fresh episode cannot collide
        _audit("confirmation_resent", locked, actor, now, reason=why, notice=notice.pk)
    return notice


def support_note_add(*, payment: Payment, author: User, body: str, now: datetime) -> SupportNote:
    """Add an internal note to a payment (staff only, never shown to the borrower).

    :raises ReasonRequired: for an empty note.
    """
    text = _reason(body)
    with transaction.atomic():
        note = SupportNote.objects.create(payment=payment, author=author, body=text, created_at=now)
        _audit("note_added", payment, author, now, note=note.pk)
    return note


def refund_request_create(
    *, attempt: PaymentAttempt, actor: User, reason: str, now: datetime
) -> RefundRequest:
    """Ask for a duplicate charge to be refunded; a supervisor must approve it.

    :raises ReasonRequired: without a reason.
    :raises NotADuplicateCharge: unless the attempt is a flagged, unrefunded duplicate.
    :raises RefundAlreadyRequested: when a live request exists for the attempt.
    """
    why = _reason(reason)
    if not is_unrefunded_duplicate(attempt):
        raise NotADuplicateCharge()
    try:
        with transaction.atomic():
            request = RefundRequest.objects.create(
                payment_id=attempt.payment_id,
                attempt=attempt,
                requested_by=actor,
                reason=why,
                requested_at=now,
            )
            _audit(
                "refund_requested",
                attempt.payment,
                actor,
                now,
                reason=why,
                request=request.pk,
                attempt=attempt.out_trade_no,
            )
    except IntegrityError as exc:
        raise RefundAlreadyRequested() from exc
    return request


def is_unrefunded_duplicate(attempt: PaymentAttempt) -> bool:
    """Whether the attempt took money its payment did not need and is not refunded."""
    events = PaymentEvent.objects.filter(payment_id=attempt.payment_id)
    flagged = events.filter(kind=EventKind.NOTE, data__refund_required=attempt.out_trade_no)
    refunded = events.filter(kind=EventKind.REFUND, attempt=attempt, data__succeeded=True)
    return attempt.status == AttemptStatus.SUCCEEDED and flagged.exists() and not refunded.exists()


def refund_request_decide(
    *,
    request: RefundRequest,
    actor: User,
    approve: bool,
    note: str,
    now: datetime,
    channels: ChannelFactory = default_channel,
) -> RefundRequest:
    """Approve (and send) or reject a refund request: the checker's half.

    The decision commits before the channel is called, so a second approval finds
    it decided and never sends a second refund. The refund goes through
    :func:`attempt_refund_duplicate` (fixed refund number, safe to retry).

    :raises NotAllowed: unless the actor may approve refunds (supervisors, admins).
    :raises SelfApprovalRefused: when the actor made the request.
    :raises RefundAlreadyDecided: when it is no longer pending.
    :raises ReasonRequired: without a note.
    """
    if not actor.has_perm("repayments.approve_refundrequest"):
        raise NotAllowed()
    if request.requested_by_id == actor.pk:
        raise SelfApprovalRefused()
    why = _reason(note)
    with transaction.atomic():
        locked = (
            RefundRequest.objects.select_for_update().select_related("payment").get(pk=request.pk)
        )
        if locked.status != RefundRequestStatus.PENDING:
            raise RefundAlreadyDecided()
        locked.status = RefundRequestStatus.APPROVED if approve else RefundRequestStatus.REJECTED
        locked.decided_by, locked.decided_at, locked.decision_note = actor, now, why
        locked.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        _audit(
            "refund_approved" if approve else "refund_rejected",
            locked.payment,
            actor,
            now,
            reason=why,
            request=locked.pk,
        )
    if approve:
        _send_refund(locked, now=now, channels=channels)
    return locked


def _send_refund(request: RefundRequest, *, now: datetime, channels: ChannelFactory) -> None:
    try:
        attempt_refund_duplicate(attempt_id=request.attempt_id, now=now, channels=channels)
    except ChannelError:
        return  # stays approved; the duplicate sweep retries with the same refund number
    refunded = PaymentEvent.objects.filter(
        kind=EventKind.REFUND, attempt_id=request.attempt_id, data__succeeded=True
    ).exists()
    request.status = RefundRequestStatus.REFUNDED if refunded else RefundRequestStatus.REFUND_FAILED
    request.save(update_fields=["status"])


def attempt_mark_reviewed(
    *,
    attempt: PaymentAttempt,
    actor: User,
    reason: str,
    now: datetime,
    channels: ChannelFactory = default_channel,
) -> PaymentAttempt:
    """Ask the channel once more, then take the attempt off the manual-review list,
    recording what the channel said and why (a supervisor's correction).

    :raises NotAllowed: unless the actor may correct reviews.
    :raises NotUnderReview: when the attempt is not flagged for review.
    :raises ReasonRequired: without a reason.
    """
    if not actor.has_perm("repayments.correct_attempt_review"):
        raise NotAllowed()
    why = _reason(reason)
    if not attempt.needs_review:
        raise NotUnderReview()
    status = janitor_check(attempt_id=attempt.pk, now=now, channels=channels)
    with transaction.atomic():
        locked = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        if not locked.needs_review:
            raise NotUnderReview()
        locked.needs_review = False
        locked.save(update_fields=["needs_review"])
        timeline_record(
            payment=locked.payment,
            attempt=locked,
            kind=EventKind.NOTE,
            summary=f"review of {locked.out_trade_no} done by {actor.get_username()}: {status}",
            now=now,
            data={"reviewed": True, "channel_status": status},
        )
        _audit(
            "attempt_reviewed",
            locked.payment,
            actor,
            now,
            reason=why,
            attempt=locked.out_trade_no,
            channel_status=status,
        )
    return locked
