"""Reminders before a due date and alerts after it, written to the notice outbox.

Each notice is about an installment and announces it as unpaid; if the
installment is paid before the notice goes out, the dispatcher supersedes it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from notifications.models import NoticeKind
from notifications.preferences import after_quiet_hours
from notifications.services import notice_enqueue
from notifications.subjects import SubjectType, register_subject_type
from repayments.domain.money import ZERO, format_yuan
from repayments.models import Installment, LoanStatus

SUBJECT = "installment"
UNPAID = "unpaid"
REMIND_DAYS_BEFORE = (3, 1)
# An overdue installment is announced again every week until it is paid.
OVERDUE_REPEAT_DAYS = 7


def reminders_register() -> None:
    register_subject_type(
        SubjectType(
            name=SUBJECT,
            read_state=_read_state,
            read_states=_read_states,
            confirmed_states=frozenset(),  # nothing to correct: reminders are advisory
            describe=lambda installment_id: {},
        )
    )


def reminders_enqueue(*, today: date, now: datetime) -> int:
    """Reminders for installments due in 3 and in 1 days, and overdue alerts.

    Idempotent: a reminder already written for the same installment and day
    count is not written again.
    """
    written = 0
    unpaid = Installment.objects.filter(
        paid_value_date__isnull=True, loan__status=LoanStatus.ACTIVE
    ).select_related("loan", "loan__product", "loan__borrower")
    for days in REMIND_DAYS_BEFORE:
        for installment in unpaid.filter(due_date=today + timedelta(days=days)):
            written += _enqueue(installment, NoticeKind.DUE_REMINDER, f"d-{days}", now=now)
    for installment in unpaid.filter(due_date__lt=today):
        late_days = (today - installment.due_date).days
        if late_days <= installment.loan.product.grace_days:
            continue
        week = (late_days - installment.loan.product.grace_days - 1) // OVERDUE_REPEAT_DAYS
        written += _enqueue(installment, NoticeKind.OVERDUE, f"w-{week}", now=now)
    return written


def _enqueue(installment: Installment, kind: NoticeKind, episode: str, *, now: datetime) -> int:
    loan = installment.loan
    card = loan.borrower.bound_cards.filter(is_active=True).order_by("priority").first()
    owed = sum(installment.outstanding().values(), ZERO)
    params: dict[str, Any] = {
        "loan": loan.contract_number,
        "number": installment.number,
        "amount": format_yuan(owed),
        "due_date": installment.due_date.isoformat(),
        "tail": card.card_masked[-4:] if card else "",
    }
    notice = notice_enqueue(
        recipient_id=loan.borrower_id,
        kind=kind,
        subject_type_name=SUBJECT,
        subject_id=installment.pk,
        announced_state=UNPAID,
        episode=episode,
        params=params,
        now=now,
        delay=after_quiet_hours(user_id=loan.borrower_id, at=now) - now,
    )
    return 1 if notice else 0


def _read_state(installment_id: int) -> str | None:
    paid = (
        Installment.objects.filter(pk=installment_id)
        .values_list("paid_value_date", flat=True)
        .first()
    )
    return "paid" if paid else UNPAID


def _read_states(installment_ids: Collection[int]) -> Mapping[int, str]:
    """Many installments' states in one query: the dispatcher checks a batch at a time."""
    rows = Installment.objects.filter(pk__in=installment_ids).order_by()
    return {
        pk: "paid" if paid else UNPAID for pk, paid in rows.values_list("pk", "paid_value_date")
    }
