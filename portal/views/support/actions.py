"""Console actions (POST): each validates its form, calls one service, and
redirects back with a message. Every service writes the audit entry."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from portal.views.support import forms
from portal.views.support.access import (
    ACT,
    APPROVE_REFUND,
    CORRECT_REVIEW,
    staff_user,
    support_view,
)
from repayments.domain.errors import DomainError
from repayments.domain.states import AttemptStatus
from repayments.models import Dispute, Payment, PaymentAttempt, RefundRequest, User
from repayments.models.payments import ATTEMPT_STATUS_LABELS
from repayments.services.disputes import dispute_assign, dispute_reply, dispute_resolve
from repayments.services.support import (
    attempt_mark_reviewed,
    refund_request_create,
    refund_request_decide,
    support_note_add,
    support_query_channel,
    support_resend_confirmation,
)

ERROR_WORDS = {
    "reason_required": gettext_lazy("Please give a reason."),
    "not_allowed": gettext_lazy("Your role cannot do this."),
    "self_approval_refused": gettext_lazy(
        "You cannot decide a refund you requested yourself: another supervisor must."
    ),
    "refund_already_decided": gettext_lazy("This refund request was already decided."),
    "refund_already_requested": gettext_lazy("This charge already has a refund request."),
    "not_a_duplicate_charge": gettext_lazy(
        "Only a duplicate charge not yet refunded can be refunded from the console."
    ),
    "nothing_to_resend": gettext_lazy("Only a confirmed payment has a confirmation to resend."),
    "not_under_review": gettext_lazy("This attempt is not waiting for a manual review."),
    "dispute_closed": gettext_lazy("This case is already closed."),
}


def _refused(request: HttpRequest, error: DomainError) -> None:
    words = ERROR_WORDS.get(error.code)
    messages.error(request, str(words) if words else error.message)


def _invalid(request: HttpRequest, form: object) -> None:
    errors = getattr(form, "errors", {})
    text = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in errors.items())
    messages.error(request, _("Please check the form: %(errors)s") % {"errors": text})


def _payment(public_id: str) -> Payment:
    return get_object_or_404(Payment.objects.select_related("loan"), public_id=public_id)


def _then(action: Callable[[], object], text: str) -> Callable[[], str]:
    """``action``, then ``text`` as its success message."""

    def run() -> str:
        action()
        return text

    return run


def _run(request: HttpRequest, action: Callable[[], str]) -> None:
    try:
        messages.success(request, action())
    except DomainError as error:
        _refused(request, error)


@require_POST
@support_view(ACT)
def payment_query(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(public_id)
    form = forms.ReasonForm(request.POST)
    if not form.is_valid():
        _invalid(request, form)
        return redirect("support:payment", public_id=public_id)

    def act() -> str:
        answer = support_query_channel(
            payment=payment,
            actor=staff_user(request),
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
        )
        if answer.error:
            return _("The channel could not answer: %(error)s") % {"error": answer.error}
        if not answer.asked:
            return _("Asked a few seconds ago; the answer below is current.")
        return _("The channel was asked; the attempt is now %(status)s.") % {
            "status": ATTEMPT_STATUS_LABELS.get(AttemptStatus(answer.status), answer.status)
        }

    _run(request, act)
    return redirect("support:payment", public_id=public_id)


@require_POST
@support_view(ACT)
def payment_resend(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(public_id)
    form = forms.ReasonForm(request.POST)
    if form.is_valid():
        _run(
            request,
            _then(
                lambda: support_resend_confirmation(
                    payment=payment,
                    actor=staff_user(request),
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                ),
                _("The confirmation will be sent again."),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:payment", public_id=public_id)


@require_POST
@support_view(ACT)
def payment_note(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(public_id)
    form = forms.NoteForm(request.POST)
    if form.is_valid():
        _run(
            request,
            _then(
                lambda: support_note_add(
                    payment=payment,
                    author=staff_user(request),
                    body=form.cleaned_data["body"],
                    now=timezone.now(),
                ),
                _("Note added."),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:payment", public_id=public_id)


@require_POST
@support_view(ACT)
def refund_request(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(public_id)
    form = forms.RefundRequestForm(request.POST)
    if form.is_valid():
        attempt = get_object_or_404(
            PaymentAttempt, pk=form.cleaned_data["attempt"], payment=payment
        )
        _run(
            request,
            _then(
                lambda: refund_request_create(
                    attempt=attempt,
                    actor=staff_user(request),
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                ),
                _("Refund requested; a supervisor must approve it."),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:payment", public_id=public_id)


@require_POST
@support_view(APPROVE_REFUND)
def refund_decide(request: HttpRequest, request_id: int) -> HttpResponse:
    refund = get_object_or_404(RefundRequest.objects.select_related("payment"), pk=request_id)
    form = forms.RefundDecisionForm(request.POST)
    if form.is_valid():

        def act() -> str:
            decided = refund_request_decide(
                request=refund,
                actor=staff_user(request),
                approve=form.cleaned_data["decision"] == "approve",
                note=form.cleaned_data["note"],
                now=timezone.now(),
            )
            return _("Refund request: %(status)s.") % {"status": decided.get_status_display()}

        _run(request, act)
    else:
        _invalid(request, form)
    return redirect("support:payment", public_id=refund.payment.public_id)


@require_POST
@support_view(CORRECT_REVIEW)
def attempt_reviewed(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = get_object_or_404(PaymentAttempt.objects.select_related("payment"), pk=attempt_id)
    form = forms.ReasonForm(request.POST)
    if form.is_valid():

        def act() -> str:
            checked = attempt_mark_reviewed(
                attempt=attempt,
                actor=staff_user(request),
                reason=form.cleaned_data["reason"],
                now=timezone.now(),
            )
            return _("Review recorded; the channel says %(status)s.") % {
                "status": checked.get_status_display()
            }

        _run(request, act)
    else:
        _invalid(request, form)
    return redirect("support:payment", public_id=attempt.payment.public_id)


def _dispute(public_id: str) -> Dispute:
    return get_object_or_404(Dispute, public_id=public_id)


@require_POST
@support_view(ACT)
def dispute_reply_post(request: HttpRequest, public_id: str) -> HttpResponse:
    dispute = _dispute(public_id)
    form = forms.ReplyForm(request.POST)
    if form.is_valid():
        internal = form.cleaned_data["internal"]
        _run(
            request,
            _then(
                lambda: dispute_reply(
                    dispute=dispute,
                    author=staff_user(request),
                    body=form.cleaned_data["body"],
                    now=timezone.now(),
                    internal=internal,
                ),
                (_("Internal note added.") if internal else _("Reply sent to the borrower.")),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:dispute", public_id=public_id)


@require_POST
@support_view(ACT)
def dispute_assign_post(request: HttpRequest, public_id: str) -> HttpResponse:
    dispute = _dispute(public_id)
    form = forms.AssignForm(request.POST)
    if form.is_valid():
        chosen = form.cleaned_data["assignee"]
        assignee = get_object_or_404(User, pk=chosen) if chosen else None
        _run(
            request,
            _then(
                lambda: dispute_assign(
                    dispute=dispute,
                    assignee=assignee,
                    actor=staff_user(request),
                    now=timezone.now(),
                ),
                _("Assignment saved."),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:dispute", public_id=public_id)


@require_POST
@support_view(ACT)
def dispute_resolve_post(request: HttpRequest, public_id: str) -> HttpResponse:
    dispute = _dispute(public_id)
    form = forms.ResolveForm(request.POST)
    if form.is_valid():
        _run(
            request,
            _then(
                lambda: dispute_resolve(
                    dispute=dispute,
                    actor=staff_user(request),
                    resolution=form.cleaned_data["resolution"],
                    note=form.cleaned_data["note"],
                    now=timezone.now(),
                ),
                _("Case closed; the borrower has been told."),
            ),
        )
    else:
        _invalid(request, form)
    return redirect("support:dispute", public_id=public_id)
