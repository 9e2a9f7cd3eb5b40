"""Reads for the support console: search, a payment's whole story, the dispute queue.

Staff see everything the borrower sees and more: raw callbacks with their
verification result, janitor polls, statement differences, every notice with
how it was delivered, internal notes and the audit trail of agent actions. The
phone number is only ever shown masked.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

from notifications.models import Notice
from repayments.domain.identity import InvalidIdentity, normalise_phone
from repayments.domain.workdays import WorkingCalendar
from repayments.models import (
    OPEN_DISPUTE_STATUSES,
    AuditEntry,
    CallbackStatus,
    Discrepancy,
    Dispute,
    EventKind,
    InboundCallbackRecord,
    Payment,
    PaymentAttempt,
    RefundRequest,
    SupportNote,
)
from repayments.services.disputes import NOTICE_SUBJECT as DISPUTE_SUBJECT
from repayments.services.payment_notices import SUBJECT as PAYMENT_SUBJECT
from repayments.services.support import first_response_due, support_calendar

SEARCH_LIMIT = 50
RAW_BODY_LIMIT = 4000
CASE_NUMBER = re.compile(r"^[0-9A-Fa-f]{8}$")


# --- Search --------------------------------------------------------------------------


@dataclass
class SearchResult:
    query: str
    matched_by: str = ""  # phone | contract | order | channel_trade_no | payment | case
    payments: list[Payment] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)


def support_search(query: str) -> SearchResult:
    """Find payments and cases by phone, contract number, our order number, the
    channel's transaction number, a payment id or a case number."""
    text = query.strip()
    result = SearchResult(query=text)
    if not text:
        return result
    payments = _payments().none()
    disputes = _disputes().none()
    phone = _phone(text)
    if phone:
        result.matched_by = "phone"
        payments = _payments().filter(borrower__phone=phone)
        disputes = _disputes().filter(borrower__phone=phone)
    elif by_contract := _payments().filter(loan__contract_number__iexact=text):
        result.matched_by = "contract"
        payments = by_contract
        disputes = _disputes().filter(loan__contract_number__iexact=text)
    elif attempt := _attempt(text):
        result.matched_by = "order" if attempt.out_trade_no == text else "channel_trade_no"
        payments = _payments().filter(pk=attempt.payment_id)
        disputes = _disputes().filter(payment_id=attempt.payment_id)
    elif public_id := _uuid(text):
        result.matched_by = "payment"
        payments = _payments().filter(public_id=public_id)
        disputes = _disputes().filter(Q(public_id=public_id) | Q(payment__public_id=public_id))
    if CASE_NUMBER.match(text) and not result.matched_by:
        result.matched_by = "case"
        disputes = _disputes().filter(public_id__startswith=text.lower())
    result.payments = list(payments[:SEARCH_LIMIT])
    result.disputes = list(disputes[:SEARCH_LIMIT])
    return result


def _payments() -> QuerySet[Payment]:
    return Payment.objects.select_related("loan", "borrower").order_by("-created_at", "-id")


def _disputes() -> QuerySet[Dispute]:
    return Dispute.objects.select_related("loan", "borrower", "payment", "assigned_to")


def _phone(text: str) -> str:
    try:
        return normalise_phone(text)
    except InvalidIdentity:
        return ""


def _attempt(text: str) -> PaymentAttempt | None:
    return (
        PaymentAttempt.objects.filter(Q(out_trade_no=text) | Q(channel_trade_no=text))
        .order_by("-created_at")
        .first()
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# --- One-view timeline ---------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    at: datetime
    source: str  # event | callback | discrepancy | notice | dispute | note | action | refund
    title: str
    detail: str = ""
    tone: str = ""  # "" | good | bad | warn
    raw: str = ""  # raw callback body, for the record
    lines: tuple[str, ...] = ()


def payment_timeline(payment: Payment) -> list[Entry]:
    """Everything that happened to a payment, from every source, oldest first."""
    attempts = list(payment.attempts.all())
    numbers = [a.out_trade_no for a in attempts]
    entries: list[Entry] = []
    entries += _events(payment)
    entries += _callbacks(attempts, numbers)
    entries += _discrepancies(numbers)
    entries += _notices(payment)
    entries += _dispute_entries(payment)
    entries += _notes(payment)
    entries += _actions(payment)
    entries += _refund_requests(payment)
    return sorted(entries, key=lambda entry: entry.at)


EVENT_TONES: dict[str, str] = {
    EventKind.STATE_CHANGE: "",
    EventKind.IGNORED: "warn",
    EventKind.REFUND: "warn",
    EventKind.ALLOCATION: "good",
}


def _events(payment: Payment) -> list[Entry]:
    entries = []
    for event in payment.events.select_related("attempt").order_by("id"):
        detail = event.attempt.out_trade_no if event.attempt else ""
        if event.from_status or event.to_status:
            detail = f"{detail} {event.from_status or '·'} → {event.to_status}".strip()
        lines = _data_lines(event.data)
        tone = "good" if event.to_status == "succeeded" else EVENT_TONES.get(event.kind, "")
        tone = "bad" if event.to_status == "failed" else tone
        entries.append(
            Entry(
                at=event.occurred_at,
                source="event",
                title=f"{event.get_kind_display()}: {event.summary}",
                detail=detail,
                tone=tone,
                lines=lines,
            )
        )
    return entries


def _data_lines(data: dict[str, Any]) -> tuple[str, ...]:
    """``key: value`` lines for a JSON detail, lists of records one per line."""
    lines = []
    for key, value in sorted(data.items()):
        if value in ("", None, [], {}):
            continue
        if isinstance(value, list):
            lines += [f"{key}: {_flat(item)}" for item in value]
        else:
            lines.append(f"{key}: {_flat(value)}")
    return tuple(lines)


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _callbacks(attempts: list[PaymentAttempt], numbers: list[str]) -> list[Entry]:
    rows = InboundCallbackRecord.objects.filter(
        Q(attempt__in=attempts) | Q(out_trade_no__in=numbers)
    ).order_by("received_at", "id")
    entries = []
    for row in rows:
        body = bytes(row.body).decode("utf-8", errors="replace")
        verified = row.status not in (CallbackStatus.REJECTED, CallbackStatus.RECEIVED)
        entries.append(
            Entry(
                at=row.received_at,
                source="callback",
                title=f"{row.get_channel_display()} callback #{row.pk}: {row.get_status_display()}",
                detail=f"reported {row.reported_status or '?'}; signature "
                + ("verified" if verified else "not verified"),
                tone="bad" if row.status in _BAD_CALLBACKS else "",
                raw=body[:RAW_BODY_LIMIT],
                lines=tuple(x for x in (row.error,) if x),
            )
        )
    return entries


_BAD_CALLBACKS = (CallbackStatus.REJECTED, CallbackStatus.QUARANTINED, CallbackStatus.HELD)


def _discrepancies(numbers: list[str]) -> list[Entry]:
    rows = Discrepancy.objects.filter(out_trade_no__in=numbers).order_by("found_at")
    return [
        Entry(
            at=row.found_at,
            source="discrepancy",
            title=f"Statement {row.channel} {row.day}: {row.get_kind_display()}",
            detail=f"{row.get_status_display()}; "
            f"channel {row.channel_amount}, ours {row.our_amount}",
            tone="warn",
            lines=_data_lines(row.evidence),
        )
        for row in rows
    ]


def _notices(payment: Payment) -> list[Entry]:
    rows = (
        Notice.objects.filter(subject_type=PAYMENT_SUBJECT, subject_id=payment.pk)
        .prefetch_related("deliveries")
        .order_by("created_at", "id")
    )
    return [_notice_entry(row) for row in rows]


def _notice_entry(row: Notice) -> Entry:
    deliveries = tuple(
        f"{d.get_channel_display()} via {d.provider}: {d.get_status_display()}"
        + (f" ({d.error})" if d.error else "")
        for d in row.deliveries.all()
    )
    tone = {"delivered": "good", "failed": "bad", "superseded": "warn"}.get(row.status, "")
    return Entry(
        at=row.created_at,
        source="notice",
        title=f"Notice {row.get_kind_display()}: {row.get_status_display()}",
        detail=row.body or row.status_reason,
        tone=tone,
        lines=deliveries,
    )


def _dispute_entries(payment: Payment) -> list[Entry]:
    entries = []
    disputes = list(payment.disputes.all())
    for dispute in disputes:
        entries.append(
            Entry(
                at=dispute.created_at,
                source="dispute",
                title=f"Dispute {dispute.case_number} opened: {dispute.get_category_display()}",
                detail=dispute.description,
                tone="warn",
            )
        )
        for message in dispute.messages.select_related("author").order_by("created_at", "id"):
            who = message.author.get_username() if message.author else "system"
            entries.append(
                Entry(
                    at=message.created_at,
                    source="dispute",
                    title=f"Dispute {dispute.case_number}: "
                    + ("internal note" if message.internal else "message")
                    + f" by {who}",
                    detail=message.body,
                )
            )
    notices = Notice.objects.filter(
        subject_type=DISPUTE_SUBJECT, subject_id__in=[d.pk for d in disputes]
    ).prefetch_related("deliveries")
    return entries + [_notice_entry(row) for row in notices]


def _notes(payment: Payment) -> list[Entry]:
    return [
        Entry(
            at=note.created_at,
            source="note",
            title=f"Internal note by {note.author.get_username()}",
            detail=note.body,
        )
        for note in SupportNote.objects.filter(payment=payment).select_related("author")
    ]


def _actions(payment: Payment) -> list[Entry]:
    rows = AuditEntry.objects.filter(
        object_type="payment", object_id=str(payment.public_id), action__startswith="support."
    ).order_by("id")
    return [
        Entry(
            at=row.occurred_at,
            source="action",
            title=f"{row.action.removeprefix('support.')} by {row.actor_label}",
            detail=str(row.data.get("reason", "")),
            lines=_data_lines({k: v for k, v in row.data.items() if k != "reason"}),
        )
        for row in rows
    ]


def _refund_requests(payment: Payment) -> list[Entry]:
    rows = RefundRequest.objects.filter(payment=payment).select_related(
        "attempt", "requested_by", "decided_by"
    )
    return [
        Entry(
            at=row.requested_at,
            source="refund",
            title=f"Refund request for {row.attempt.out_trade_no}: {row.get_status_display()}",
            detail=row.reason,
            tone="warn",
        )
        for row in rows
    ]


# --- Dispute queue -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    dispute: Dispute
    age: timedelta
    due_at: datetime
    answered: bool
    breached: bool


def dispute_queue(*, now: datetime, assigned_to_id: int | None = None) -> list[QueueRow]:
    """Open cases, oldest first, with their age and first-response SLA."""
    cases = _disputes().filter(status__in=OPEN_DISPUTE_STATUSES).order_by("created_at", "id")
    if assigned_to_id is not None:
        cases = cases.filter(assigned_to_id=assigned_to_id)
    calendar = support_calendar()
    return [queue_row(case, now=now, calendar=calendar) for case in cases]


def queue_row(
    dispute: Dispute, *, now: datetime, calendar: WorkingCalendar | None = None
) -> QueueRow:
    due = first_response_due(dispute.created_at, calendar)
    answered_at = dispute.first_response_at
    return QueueRow(
        dispute=dispute,
        age=now - dispute.created_at,
        due_at=due,
        answered=answered_at is not None,
        breached=(answered_at or now) > due,
    )


def pending_refund_requests() -> list[RefundRequest]:
    return list(
        RefundRequest.objects.filter(status="pending")
        .select_related("payment", "attempt", "requested_by")
        .order_by("requested_at")
    )


def needs_review_attempts(limit: int = 50) -> Iterable[PaymentAttempt]:
    return PaymentAttempt.objects.filter(needs_review=True).select_related("payment")[:limit]


def staff_notes(payment: Payment) -> list[SupportNote]:
    return list(SupportNote.objects.filter(payment=payment).select_related("author"))
