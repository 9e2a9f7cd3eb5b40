"""Console pages (GET): the queue, search, a payment's whole story, a case."""

from __future__ import annotations

from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from portal.views.support import forms
from portal.views.support.access import support_view
from repayments.domain.states import PaymentStatus
from repayments.models import Dispute, Payment, Role, User
from repayments.services.disputes import SCREENSHOT_CONTENT_TYPES, image_extension
from repayments.services.support import is_unrefunded_duplicate
from repayments.services.support_timeline import (
    dispute_queue,
    needs_review_attempts,
    payment_timeline,
    pending_refund_requests,
    queue_row,
    support_search,
)


@support_view()
def index(request: HttpRequest) -> HttpResponse:
    """The dispute queue (all, or mine), refunds waiting for a checker, reviews due."""
    mine = request.GET.get("mine") == "1"
    rows = dispute_queue(now=timezone.now(), assigned_to_id=request.user.pk if mine else None)
    return render(
        request,
        "support/index.html",
        {
            "rows": rows,
            "mine": mine,
            "refunds": pending_refund_requests(),
            "reviews": list(needs_review_attempts()),
        },
    )


@support_view()
def search(request: HttpRequest) -> HttpResponse:
    result = support_search(request.GET.get("q", "")[:100])
    return render(request, "support/search.html", {"result": result})


@support_view()
def payment_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = get_object_or_404(
        Payment.objects.select_related("loan", "borrower"), public_id=public_id
    )
    attempts = list(payment.attempts.order_by("created_at", "id"))
    return render(
        request,
        "support/payment.html",
        {
            "payment": payment,
            "attempts": attempts,
            "can_resend": payment.status == PaymentStatus.SUCCEEDED,
            "duplicates": [a for a in attempts if is_unrefunded_duplicate(a)],
            "reviews": [a for a in attempts if a.needs_review],
            "disputes": list(payment.disputes.all()),
            "entries": payment_timeline(payment),
            "reason_form": forms.ReasonForm(),
            "note_form": forms.NoteForm(),
        },
    )


@support_view()
def dispute_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    dispute = get_object_or_404(
        Dispute.objects.select_related("loan", "borrower", "payment", "assigned_to"),
        public_id=public_id,
    )
    return render(
        request,
        "support/dispute.html",
        {
            "dispute": dispute,
            "row": queue_row(dispute, now=timezone.now()),
            "messages_all": list(dispute.messages.select_related("author")),
            "staff": _support_staff(),
            "reply_form": forms.ReplyForm(),
            "resolve_form": forms.ResolveForm(),
        },
    )


@support_view()
def dispute_screenshot(request: HttpRequest, public_id: str) -> HttpResponseBase:
    """The borrower's screenshot, to staff only (media is never served publicly)."""
    dispute = get_object_or_404(Dispute, public_id=public_id)
    if not dispute.screenshot:
        raise Http404()
    handle = dispute.screenshot.open("rb")
    kind = image_extension(handle.read(12))
    handle.seek(0)
    content_type = SCREENSHOT_CONTENT_TYPES.get(kind, "application/octet-stream")
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "private, no-store"
    return response


def _support_staff() -> list[User]:
    roles = [Role.SUPPORT_AGENT.value, Role.SUPPORT_SUPERVISOR.value, Role.ADMIN.value]
    return list(
        User.objects.filter(is_staff=True, is_active=True)
        .filter(Q(groups__name__in=roles) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )
