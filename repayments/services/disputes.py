"""Disputes raised by borrowers ("I paid but it does not show", "the amount is wrong").

A case is opened by the borrower, answered and resolved by support, and resolved
by the system when the payment it is about is confirmed after all. Every change
is audited, and the borrower hears of each step through the notice outbox, in
the same transaction as the change.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from notifications.models import NoticeKind, NotificationPreference
from notifications.services import notice_enqueue
from repayments.domain.errors import DomainError
from repayments.models import (
    OPEN_DISPUTE_STATUSES,
    Dispute,
    DisputeCategory,
    DisputeMessage,
    DisputeResolution,
    DisputeStatus,
    Loan,
    Payment,
    PaymentAttempt,
    User,
)
from repayments.services.audit import audit_append
from repayments.services.errors import NotFound
from repayments.services.write_behind import flush_deferred

DESCRIPTION_MAX = 2000
MESSAGE_MAX = 2000
TRADE_NO_MAX = 64
SCREENSHOT_MAX_BYTES = 5 * 1024 * 1024
NOTICE_SUBJECT = "dispute"
# What the borrower is told, by event; filled into the ``dispute_update`` notice text.
NOTICE_WORDS = {
    "received": gettext_lazy("received; we will answer within 4 working hours"),
    "updated": gettext_lazy("support has replied, please see Anxin Repay"),
    DisputeResolution.PAID_CONFIRMED: gettext_lazy(
        "resolved: your payment is confirmed and posted"
    ),
    DisputeResolution.REFUNDED: gettext_lazy("resolved: the extra charge is being refunded"),
    DisputeResolution.REJECTED: gettext_lazy("closed; please see the explanation in Anxin Repay"),
}


class InvalidDispute(DomainError):
    """The dispute is missing something or names a payment of another loan."""

    code = "invalid_dispute"

    def __init__(self, *, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DisputeClosed(DomainError):
    """This case is already closed; open a new one if the problem is back."""

    code = "dispute_closed"


def dispute_open(
    *,
    borrower: User,
    loan: Loan,
    category: str,
    description: str,
    now: datetime,
    payment: Payment | None = None,
    trade_no: str = "",
    screenshot: UploadedFile | None = None,
) -> Dispute:
    """Open a dispute about ``loan``, linked to the payment it concerns when we can tell.

    ``trade_no`` is what the borrower copied from their channel record: our merchant
    order number or the channel's transaction number. When no payment is named, a
    payment of this loan with that number is linked. A ``screenshot`` must be a
    PNG, JPEG or WebP image (checked by content) of at most 5 MB. The borrower is
    sent a "dispute received" notice.

    :raises NotFound: when the loan or the payment is not the borrower's.
    :raises InvalidDispute: for an unknown category, an empty or too long text, a
        payment of another loan, or a screenshot that is not an image or too big.
    """
    if loan.borrower_id != borrower.pk or (payment and payment.borrower_id != borrower.pk):
        raise NotFound()
    text, number = description.strip(), trade_no.strip()
    _check(category=category, text=text, number=number)
    extension = screenshot_extension(screenshot) if screenshot is not None else ""
    if payment is not None and payment.loan_id != loan.pk:
        raise InvalidDispute(field="payment", message=_("This payment is not on this loan."))
    if payment is None and number:
        payment = _payment_by_trade_no(loan, number)
    dispute = Dispute(
        borrower=borrower,
        loan=loan,
        payment=payment,
        category=category,
        description=text,
        channel_trade_no=number,
        created_at=now,
        updated_at=now,
    )
    if screenshot is not None:
        # Our own name (and the service's clock, not upload_to's): the borrower's
        # file name never reaches the file system.
        name = f"disputes/{now:%Y/%m}/{dispute.public_id.hex}.{extension}"
        dispute.screenshot.name = default_storage.save(name, screenshot)
    try:
        _save_opened(dispute, now=now)
    except Exception:
        # Nothing half-written: the stored file goes when its row does not commit.
        if dispute.screenshot:
            default_storage.delete(dispute.screenshot.name)
        raise
    return dispute


def _save_opened(dispute: Dispute, *, now: datetime) -> None:
    with transaction.atomic():
        dispute.save(force_insert=True)
        audit_append(
            action="dispute.opened",
            object_type="dispute",
            object_id=dispute.pk,
            now=now,
            actor=dispute.borrower,
            data={
                "case": dispute.case_number,
                "loan": dispute.loan.contract_number,
                "payment": str(dispute.payment.public_id) if dispute.payment else None,
                "category": dispute.category,
                "trade_no": dispute.channel_trade_no,
                "screenshot": bool(dispute.screenshot),
            },
        )
        _notify(dispute, event="received", episode="received", now=now)


def dispute_reply(
    *, dispute: Dispute, author: User, body: str, now: datetime, internal: bool = False
) -> DisputeMessage:
    """Add a message to the case from the borrower or from staff.

    A staff reply the borrower can see stops the SLA clock (first response), moves
    an open case to "being handled" and sends a "dispute updated" notice. An
    ``internal`` note is staff-only: never shown to, nor announced to, the borrower.

    :raises NotFound: when ``author`` is neither the case's borrower nor staff, or a
        borrower tries to write an internal note.
    :raises DisputeClosed: when the borrower writes on a closed case.
    :raises InvalidDispute: for an empty or too long message.
    """
    is_borrower = author.pk == dispute.borrower_id and not author.is_staff
    if not (is_borrower or author.is_staff) or (is_borrower and internal):
        raise NotFound()
    text = _message_text(body)
    with transaction.atomic():
        locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if is_borrower and not locked.is_open:
            raise DisputeClosed()
        message = DisputeMessage.objects.create(
            dispute=locked, author=author, body=text, internal=internal, created_at=now
        )
        fields = ["updated_at"]
        if not is_borrower and not internal:
            fields += _mark_responded(locked, now)
        locked.updated_at = now
        locked.save(update_fields=fields)
        audit_append(
            action="dispute.note_added" if internal else "dispute.replied",
            object_type="dispute",
            object_id=locked.pk,
            now=now,
            actor=author,
            data={"case": locked.case_number, "message": message.pk, "by_borrower": is_borrower},
        )
        if not is_borrower and not internal:
            _notify(locked, event="updated", episode=f"message-{message.pk}", now=now)
    _refresh(dispute, locked)
    return message


def dispute_assign(
    *, dispute: Dispute, assignee: User | None, actor: User, now: datetime
) -> Dispute:
    """Give the case to ``assignee`` (a staff member), or take it back with None.

    :raises InvalidDispute: when the assignee is not staff.
    :raises DisputeClosed: when the case is already closed.
    """
    if assignee is not None and not (assignee.is_staff and assignee.is_active):
        raise InvalidDispute(
            field="assignee", message=_("Cases can only be assigned to support staff.")
        )
    with transaction.atomic():
        locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if not locked.is_open:
            raise DisputeClosed()
        previous = locked.assigned_to
        locked.assigned_to, locked.updated_at = assignee, now
        locked.save(update_fields=["assigned_to", "updated_at"])
        audit_append(
            action="dispute.assigned",
            object_type="dispute",
            object_id=locked.pk,
            now=now,
            actor=actor,
            data={
                "case": locked.case_number,
                "from": previous.get_username() if previous else None,
                "to": assignee.get_username() if assignee else None,
            },
        )
    _refresh(dispute, locked)
    return dispute


def dispute_resolve(
    *,
    dispute: Dispute,
    actor: User | None,
    resolution: str,
    note: str,
    now: datetime,
) -> Dispute:
    """Close the case with an outcome and an explanation the borrower will read.

    ``actor`` None means the system (see :func:`disputes_auto_resolve`). A rejection
    closes the case as rejected, the other outcomes as resolved. The note is added
    to the borrower's thread, and a "dispute resolved" notice is written in the
    same transaction.

    :raises InvalidDispute: for an unknown resolution or an empty note.
    :raises DisputeClosed: when the case is already closed.
    """
    if resolution not in DisputeResolution.values:
        raise InvalidDispute(field="resolution", message=_("Choose one of the listed outcomes."))
    text = _message_text(note, field="note")
    with transaction.atomic():
        locked = Dispute.objects.select_for_update().get(pk=dispute.pk)
        _close(locked, actor=actor, resolution=DisputeResolution(resolution), text=text, now=now)
    _refresh(dispute, locked)
    return dispute


def _close(
    dispute: Dispute,
    *,
    actor: User | None,
    resolution: DisputeResolution,
    text: str,
    now: datetime,
) -> None:
    """Close a locked, open case (inside the caller's transaction)."""
    if not dispute.is_open:
        raise DisputeClosed()
    message = DisputeMessage.objects.create(
        dispute=dispute, author=actor, body=text, internal=False, created_at=now
    )
    rejected = resolution == DisputeResolution.REJECTED
    dispute.status = DisputeStatus.REJECTED if rejected else DisputeStatus.RESOLVED
    dispute.resolution, dispute.resolution_note = resolution, text
    dispute.resolved_at = dispute.updated_at = now
    fields = ["status", "resolution", "resolution_note", "resolved_at", "updated_at"]
    fields += _mark_responded(dispute, now)
    dispute.save(update_fields=sorted(set(fields)))
    audit_append(
        action="dispute.resolved",
        object_type="dispute",
        object_id=dispute.pk,
        now=now,
        actor=actor,
        data={"case": dispute.case_number, "resolution": resolution, "message": message.pk},
    )
    _notify(dispute, event=resolution, episode="resolved", now=now)


_checked = threading.local()


@contextmanager
def open_cases_checked(loan_ids: Collection[int]) -> Iterator[None]:
    """For a batch of confirmations: which of these loans have an open "paid but not
    shown" case, read once for all, so :func:`disputes_auto_resolve` asks the database
    only about those (nearly every batch has none)."""
    loan_ids = set(loan_ids)
    with_cases = set(
        Dispute.objects.filter(
            loan_id__in=loan_ids,
            category=DisputeCategory.PAID_NOT_SHOWN,
            status__in=OPEN_DISPUTE_STATUSES,
        ).values_list("loan_id", flat=True)
    )
    outer = getattr(_checked, "loans", None)
    _checked.loans = (loan_ids, with_cases)
    try:
        yield
    finally:
        _checked.loans = outer


def _may_have_open_case(loan_id: int) -> bool:
    checked: tuple[set[int], set[int]] | None = getattr(_checked, "loans", None)
    if checked is not None and loan_id in checked[0]:
        return loan_id in checked[1]
    return Dispute.objects.filter(
        loan_id=loan_id,
        category=DisputeCategory.PAID_NOT_SHOWN,
        status__in=OPEN_DISPUTE_STATUSES,
    ).exists()


def disputes_auto_resolve(*, payment: Payment, now: datetime) -> list[Dispute]:
    """Resolve open "paid but not shown" cases about ``payment``, now that it succeeded.

    Runs in the state change's transaction (called from the payment notice hook),
    so the case closes exactly when the confirmation commits, whatever confirmed
    it: a late callback, a janitor query or a settlement statement. A case that
    named one of the payment's trade numbers without being linked is linked now.
    """
    # Nearly every confirmation has no case at all: one indexed read (or none, in a
    # batch that checked its loans at once), no lock.
    if not _may_have_open_case(payment.loan_id):
        return []
    flush_deferred()  # a batch may hold back the attempt's new trade number
    numbers = [
        number
        for pair in payment.attempts.values_list("out_trade_no", "channel_trade_no")
        for number in pair
        if number
    ]
    cases = (
        Dispute.objects.select_for_update()
        .filter(category=DisputeCategory.PAID_NOT_SHOWN, status__in=OPEN_DISPUTE_STATUSES)
        .filter(
            Q(payment=payment)
            | Q(payment__isnull=True, loan_id=payment.loan_id, channel_trade_no__in=numbers)
        )
        .order_by("pk")
    )
    resolved = []
    for dispute in cases:
        if dispute.payment_id is None:
            dispute.payment = payment
            dispute.save(update_fields=["payment"])
        with translation.override(_language_of(dispute.borrower_id)):
            text = _(
                "Your payment was confirmed by the channel and has been posted to your "
                "loan. This case was closed automatically."
            )
        _close(dispute, actor=None, resolution=DisputeResolution.PAID_CONFIRMED, text=text, now=now)
        resolved.append(dispute)
    return resolved


def disputes_of(borrower: User) -> QuerySet[Dispute]:
    """The borrower's cases, newest first, each with ``last_reply_at`` (the latest
    message they can see, or None)."""
    return (
        Dispute.objects.filter(borrower=borrower)
        .select_related("loan", "payment")
        .annotate(last_reply_at=Max("messages__created_at", filter=Q(messages__internal=False)))
        .order_by("-created_at", "-id")
    )


def dispute_thread_for_borrower(dispute: Dispute) -> list[DisputeMessage]:
    """The messages the borrower may see on the case, oldest first (no internal notes)."""
    return list(
        dispute.messages.filter(internal=False)
        .select_related("author")
        .order_by("created_at", "id")
    )


def screenshot_extension(upload: UploadedFile) -> str:
    """Check an upload is a PNG, JPEG or WebP image of at most 5 MB, by its bytes.

    The name and the browser's content type are the sender's claims; the first
    bytes are not. Returns the file extension that matches the content.

    :raises InvalidDispute: for anything else.
    """
    if upload.size is None or upload.size > SCREENSHOT_MAX_BYTES:
        raise InvalidDispute(field="screenshot", message=_("The screenshot must be at most 5 MB."))
    upload.seek(0)
    head = upload.read(12)
    upload.seek(0)
    extension = image_extension(head)
    if not extension:
        raise InvalidDispute(
            field="screenshot", message=_("The screenshot must be a PNG, JPEG or WebP image.")
        )
    return extension


def image_extension(head: bytes) -> str:
    """ "png", "jpg" or "webp" from a file's first 12 bytes, or "" for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return ""


SCREENSHOT_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def _check(*, category: str, text: str, number: str) -> None:
    if category not in DisputeCategory.values:
        raise InvalidDispute(field="category", message=_("Choose one of the listed categories."))
    if not text:
        raise InvalidDispute(field="description", message=_("Please describe the problem."))
    if len(text) > DESCRIPTION_MAX:
        raise InvalidDispute(
            field="description",
            message=_("Please keep the description under %(max)s characters.")
            % {"max": DESCRIPTION_MAX},
        )
    if len(number) > TRADE_NO_MAX:
        raise InvalidDispute(
            field="trade_no", message=_("A transaction number has at most 64 characters.")
        )


def _message_text(body: str, *, field: str = "body") -> str:
    text = body.strip()
    if not text:
        raise InvalidDispute(field=field, message=_("Please write a message."))
    if len(text) > MESSAGE_MAX:
        raise InvalidDispute(
            field=field,
            message=_("Please keep the message under %(max)s characters.") % {"max": MESSAGE_MAX},
        )
    return text


def _mark_responded(dispute: Dispute, now: datetime) -> list[str]:
    """Stop the SLA clock and mark the case as being handled; returns changed fields."""
    fields = []
    if dispute.first_response_at is None:
        dispute.first_response_at = now
        fields.append("first_response_at")
    if dispute.status == DisputeStatus.OPEN:
        dispute.status = DisputeStatus.IN_PROGRESS
        fields.append("status")
    return fields


def _notify(dispute: Dispute, *, event: str, episode: str, now: datetime) -> None:
    with translation.override(_language_of(dispute.borrower_id)):
        status = str(NOTICE_WORDS[event])
    notice_enqueue(
        recipient_id=dispute.borrower_id,
        kind=NoticeKind.DISPUTE_UPDATE,
        subject_type_name=NOTICE_SUBJECT,
        subject_id=dispute.pk,
        # Empty: nothing to re-check at send time; each step is announced once.
        announced_state="",
        episode=episode,
        params={"case": dispute.case_number, "status": status, "event": event},
        now=now,
    )


def _language_of(user_id: int) -> str:
    return (
        NotificationPreference.objects.filter(user_id=user_id)
        .values_list("language", flat=True)
        .first()
    ) or settings.LANGUAGE_CODE


def _refresh(target: Dispute, source: Dispute) -> None:
    """Copy a locked copy's saved fields onto the caller's instance."""
    for field in Dispute._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _payment_by_trade_no(loan: Loan, number: str) -> Payment | None:
    attempt = (
        PaymentAttempt.objects.filter(loan=loan)
        .filter(Q(out_trade_no=number) | Q(channel_trade_no=number))
        .select_related("payment")
        .order_by("-created_at", "-id")
        .first()
    )
    return attempt.payment if attempt else None
