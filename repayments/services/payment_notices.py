"""What the borrower is told when a payment changes state (rule 5), and how the
notification dispatcher reads a payment back at send time."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from notifications.models import Notice, NoticeKind
from notifications.services import contradicted_notices, notice_enqueue, settle_window
from notifications.subjects import SubjectType, register_subject_type
from repayments.domain.money import format_yuan
from repayments.domain.states import PaymentStatus
from repayments.models import Channel, Initiator, Payment, PaymentAttempt
from repayments.services.disputes import disputes_auto_resolve

SUBJECT = "payment"
CHANNEL_WORDS = {
    Channel.ALIPAY: "支付宝",
    Channel.WECHATPAY: "微信支付",
    Channel.UNIONPAY: "银行卡代扣",
}
# Bank answers in plain words (the rest are shown as the channel gave them).
FAILURE_WORDS = {
    "51": "银行卡余额不足",
    "61": "超出银行卡单笔限额",
    "64": "银行卡余额不足",
    "INSUFFICIENT_FUNDS": "银行卡余额不足",
    "closed": "订单已关闭",
    "closed_for_fallback": "已改用其他方式支付",
    "channel_unavailable": "支付渠道暂时无法使用",
}


def payment_notices_register() -> None:
    """Tell the dispatcher how to read payments (called once at start-up)."""
    register_subject_type(
        SubjectType(
            name=SUBJECT,
            read_state=_read_state,
            read_states=_read_states,
            confirmed_states=frozenset({PaymentStatus.SUCCEEDED.value}),
            describe=lambda payment_id: payment_notice_params(Payment.objects.get(pk=payment_id)),
        )
    )


def payment_notices_on_change(
    payment: Payment,
    target: PaymentStatus,
    *,
    attempt: PaymentAttempt | None,
    now: datetime,
    failure_notices_possible: bool = True,
) -> Notice | None:
    """Write the notice a state change deserves, in the state change's transaction.

    ``failure_notices_possible=False`` (the payment never failed, so no failure
    notice about it exists) spares a success the search for one to correct.
    """
    episode = str(attempt.pk) if attempt else ""
    common: dict[str, Any] = {
        "recipient_id": payment.borrower_id,
        "subject_type_name": SUBJECT,
        "subject_id": payment.pk,
        "announced_state": target.value,
        "episode": episode,
        "now": now,
    }
    if target == PaymentStatus.PROCESSING:
        if payment.initiated_by != Initiator.AUTO_DEBIT:
            return None  # the borrower started it and is watching the page
        return notice_enqueue(
            kind=NoticeKind.PAYMENT_PROCESSING,
            params=payment_notice_params(payment, attempt),
            **common,
        )
    if target == PaymentStatus.FAILED:
        return notice_enqueue(
            kind=NoticeKind.PAYMENT_FAILED,
            params=payment_notice_params(payment, attempt),
            delay=settle_window(),
            **common,
        )
    if target == PaymentStatus.SUCCEEDED:
        # "Paid but it does not show" cases about it close with the confirmation.
        disputes_auto_resolve(payment=payment, now=now)
        params = payment_notice_params(payment, attempt)
        wrong = [
            notice
            for notice in (
                contradicted_notices(
                    subject_type_name=SUBJECT, subject_id=payment.pk, state=target.value
                )
                if failure_notices_possible
                else []
            )
            if notice.kind == NoticeKind.PAYMENT_FAILED
        ]
        if wrong:
            return notice_enqueue(
                kind=NoticeKind.CORRECTION, params=params, corrects=wrong[-1], **common
            )
        return notice_enqueue(kind=NoticeKind.PAYMENT_SUCCEEDED, params=params, **common)
    return None


def payment_notice_params(
    payment: Payment, attempt: PaymentAttempt | None = None
) -> Mapping[str, Any]:
    attempt = attempt or payment.attempts.order_by("-created_at", "-id").first()
    loan = payment.loan
    # ``.all()``: a booking just made left both cached on the objects (no query).
    # Otherwise (a failure) they are read here; inside a batch that holds its writes
    # that is still current: a batch books nothing on a loan whose attempt fails in it
    # (one open attempt per loan), and it never writes a loan's schedule otherwise.
    installments = sorted(loan.installments.all(), key=lambda item: item.number)
    next_due = next((i for i in installments if i.paid_value_date is None), None)
    numbers = {item.pk: item.number for item in installments}
    # Allocations exist only once the payment is booked: no query before that.
    allocations = payment.allocations.all() if payment.allocated_at is not None else ()
    booked = sorted({n for row in allocations if (n := numbers.get(row.installment_id or 0))})
    when = payment.value_at or payment.succeeded_at
    return {
        "amount": format_yuan(payment.amount),
        "loan": loan.contract_number,
        "account": "",
        "channel": CHANNEL_WORDS.get(Channel(attempt.channel), "") if attempt else "",
        "month": f"{next_due.due_date.month}月" if next_due else "",
        "installments": "、".join(f"第{n}期" for n in booked) or "您的贷款",
        "when": timezone.localtime(when).strftime("%Y-%m-%d %H:%M") if when else "",
        "reason": _reason(payment, attempt),
        "alternatives": "其他还款方式",
    }


def _reason(payment: Payment, attempt: PaymentAttempt | None) -> str:
    code = attempt.failure_code if attempt else ""
    return FAILURE_WORDS.get(code) or payment.failure_reason or "支付未完成"


def _read_state(payment_id: int) -> str | None:
    return Payment.objects.filter(pk=payment_id).values_list("status", flat=True).first()


def _read_states(payment_ids: Collection[int]) -> Mapping[int, str]:
    """Many payments' states in one query: the dispatcher checks a batch at a time."""
    return dict(Payment.objects.filter(pk__in=payment_ids).order_by().values_list("pk", "status"))
