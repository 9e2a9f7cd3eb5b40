"""The borrower's disputes (我的申诉): the list, a new case from a payment or a trade
number, and each case with its replies, a reply form and its screenshot.

Thin: the rules (categories, lengths, what counts as an image, who may write, the
notices) live in ``repayments.services.disputes``; these views turn the borrower's
input into calls and the service's refusals into field errors. Every case is looked
up through the borrower's own disputes, so another borrower's id is a 404.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from portal.presenters import payment_row
from portal.views.payflow import user_of
from repayments.models import Dispute, DisputeCategory, DisputeStatus, Loan, Payment
from repayments.selectors import cards_for_borrower, payment_for_borrower
from repayments.services.disputes import (
    DESCRIPTION_MAX,
    MESSAGE_MAX,
    SCREENSHOT_CONTENT_TYPES,
    TRADE_NO_MAX,
    DisputeClosed,
    InvalidDispute,
    dispute_open,
    dispute_reply,
    dispute_thread_for_borrower,
    disputes_of,
    image_extension,
    screenshot_extension,
)
from repayments.services.errors import NotFound

PAGE_SIZE = 20
SCREENSHOT_ACCEPT = "image/png,image/jpeg,image/webp"
# In the order a borrower is most likely to need them; the wording is the borrower's.
CATEGORY_CHOICES = [
    (DisputeCategory.PAID_NOT_SHOWN.value, gettext_lazy("I paid, but it doesn't show")),
    (DisputeCategory.AMOUNT_MISMATCH.value, gettext_lazy("The amount is wrong")),
    (DisputeCategory.CHARGED_TWICE.value, gettext_lazy("I was charged twice")),
    (DisputeCategory.WRONG_MESSAGE.value, gettext_lazy("I got a wrong message")),
    (DisputeCategory.OTHER.value, gettext_lazy("Something else")),
]
_STATUS_TONES = {
    DisputeStatus.OPEN: ("progress", "…"),
    DisputeStatus.IN_PROGRESS: ("progress", "…"),
    DisputeStatus.RESOLVED: ("ok", "✓"),
    DisputeStatus.REJECTED: ("neutral", "○"),
}


class DisputeForm(forms.Form):
    loan = forms.TypedChoiceField(label=gettext_lazy("Loan"), coerce=int)
    category = forms.ChoiceField(
        label=gettext_lazy("What went wrong?"),
        choices=CATEGORY_CHOICES,
        widget=forms.RadioSelect,
        error_messages={"required": gettext_lazy("Please choose what went wrong.")},
    )
    description = forms.CharField(
        label=gettext_lazy("Tell us what happened"),
        max_length=DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=gettext_lazy(
            "For example: when and how you paid, the amount, and what you see instead."
        ),
        error_messages={"required": gettext_lazy("Please describe the problem.")},
    )
    trade_no = forms.CharField(
        label=gettext_lazy("Transaction number (optional)"),
        max_length=TRADE_NO_MAX,
        required=False,
        help_text=gettext_lazy(
            "From your Alipay, WeChat Pay or bank record, e.g. the 支付宝交易号 or 微信支付单号."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "text"}),
    )
    screenshot = forms.FileField(
        label=gettext_lazy("Screenshot (optional)"),
        required=False,
        help_text=gettext_lazy("A PNG, JPEG or WebP picture of at most 5 MB."),
        widget=forms.ClearableFileInput(attrs={"accept": SCREENSHOT_ACCEPT}),
    )

    def __init__(self, *args: Any, loans: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["loan"].choices = loans  # type: ignore[attr-defined]
        if len(loans) == 1:
            self.fields["loan"].widget = forms.HiddenInput()

    def clean_screenshot(self) -> Any:
        upload = self.cleaned_data.get("screenshot")
        if upload:
            try:
                screenshot_extension(upload)  # checked by content; the service checks again
            except InvalidDispute as exc:
                raise forms.ValidationError(str(exc)) from exc
        return upload


class ReplyForm(forms.Form):
    body = forms.CharField(
        label=gettext_lazy("Your reply"),
        max_length=MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": gettext_lazy("Please write your message.")},
    )


@login_required
@require_GET
def dispute_list(request: HttpRequest) -> HttpResponse:
    """The borrower's cases, newest first, each with its status and last reply."""
    page = Paginator(disputes_of(user_of(request)), PAGE_SIZE).get_page(request.GET.get("page"))
    cases = [_case(dispute) for dispute in page.object_list]
    return render(request, "portal/disputes.html", {"page": page, "cases": cases, "query": ""})


@login_required
@require_http_methods(["GET", "POST"])
def dispute_new(request: HttpRequest) -> HttpResponse:
    """A new case, about a payment (``?payment=<id>``) or a trade number (``?trade_no=``)."""
    borrower = user_of(request)
    payment = _named_payment(request)
    loans = list(borrower.loans.order_by("-start_date", "-id"))
    if not loans:
        messages.info(request, _("You have no loan to raise a problem about."))
        return redirect("home")
    if payment is not None:
        loans = [loan for loan in loans if loan.pk == payment.loan_id]
    choices = [(loan.pk, f"{loan.vehicle} · {loan.contract_number}") for loan in loans]
    if request.method == "POST":
        form = DisputeForm(request.POST, request.FILES, loans=choices)
        if form.is_valid():
            dispute = _open(request, form, payment, {loan.pk: loan for loan in loans})
            if dispute is not None:
                messages.success(
                    request,
                    _(
                        "We received your report (case %(case)s). Support answers within "
                        "4 working hours; you will get a message when they reply."
                    )
                    % {"case": dispute.case_number},
                )
                return redirect("dispute-detail", public_id=dispute.public_id)
        return _new_page(request, form, payment, status=400)
    initial: dict[str, Any] = {"loan": loans[0].pk, "trade_no": request.GET.get("trade_no", "")}
    if payment is not None or initial["trade_no"]:
        initial["category"] = DisputeCategory.PAID_NOT_SHOWN.value
    return _new_page(request, DisputeForm(initial=initial, loans=choices), payment)


@login_required
@require_http_methods(["GET", "POST"])
def dispute_detail(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """One case: status, what the borrower wrote, every reply they may see, a reply form."""
    dispute = _own_dispute(request, public_id)
    form = ReplyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dispute_reply(
                dispute=dispute,
                author=user_of(request),
                body=form.cleaned_data["body"],
                now=timezone.now(),
            )
        except DisputeClosed:
            messages.error(
                request,
                _("This case is closed. If the problem is back, please report it again."),
            )
            return redirect("dispute-detail", public_id=dispute.public_id)
        except InvalidDispute as exc:
            form.add_error("body", str(exc))
        else:
            messages.success(request, _("Your message was added to the case."))
            return redirect("dispute-detail", public_id=dispute.public_id)
    context = {
        "case": _case(dispute),
        "dispute": dispute,
        "thread": [_message(m, dispute) for m in dispute_thread_for_borrower(dispute)],
        "form": form,
        "payment_row": (
            payment_row(dispute.payment, cards_for_borrower(borrower=user_of(request)))
            if dispute.payment is not None
            else None
        ),
    }
    return render(
        request, "portal/dispute_detail.html", context, status=400 if form.errors else 200
    )


@login_required
@require_GET
def dispute_screenshot(request: HttpRequest, public_id: UUID) -> FileResponse:
    """The case's screenshot, for its borrower only; never a public media URL."""
    dispute = _own_dispute(request, public_id)
    if not dispute.screenshot:
        raise Http404
    handle = default_storage.open(dispute.screenshot.name, "rb")
    kind = image_extension(handle.read(12))
    handle.seek(0)
    response = FileResponse(
        handle, content_type=SCREENSHOT_CONTENT_TYPES.get(kind, "application/octet-stream")
    )
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --- Helpers -----------------------------------------------------------------------------


def _open(
    request: HttpRequest, form: DisputeForm, payment: Payment | None, loans: dict[int, Loan]
) -> Dispute | None:
    """Open the case; a refusal becomes an error on its field (nothing is written)."""
    data = form.cleaned_data
    try:
        return dispute_open(
            borrower=user_of(request),
            loan=loans[data["loan"]],
            category=data["category"],
            description=data["description"],
            trade_no=data["trade_no"],
            payment=payment,
            screenshot=data["screenshot"] or None,
            now=timezone.now(),
        )
    except InvalidDispute as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc))
    except NotFound as exc:
        raise Http404 from exc
    return None


def _new_page(
    request: HttpRequest, form: DisputeForm, payment: Payment | None, *, status: int = 200
) -> HttpResponse:
    row = None
    if payment is not None:
        row = payment_row(payment, cards_for_borrower(borrower=user_of(request)))
    context = {"form": form, "payment": payment, "row": row}
    return render(request, "portal/dispute_new.html", context, status=status)


def _named_payment(request: HttpRequest) -> Payment | None:
    """The payment in ``?payment=`` (also kept in the form's action); 404 if not theirs."""
    raw = request.GET.get("payment", "")
    if not raw:
        return None
    try:
        public_id = UUID(raw)
    except ValueError as exc:
        raise Http404 from exc
    payment = payment_for_borrower(borrower=user_of(request), public_id=public_id)
    if payment is None:
        raise Http404
    return payment


def _own_dispute(request: HttpRequest, public_id: UUID) -> Dispute:
    dispute = disputes_of(user_of(request)).filter(public_id=public_id).first()
    if dispute is None:
        raise Http404
    return dispute


def _case(dispute: Dispute) -> dict[str, Any]:
    tone, symbol = _STATUS_TONES.get(DisputeStatus(dispute.status), ("neutral", "○"))
    categories = dict(CATEGORY_CHOICES)
    return {
        "public_id": dispute.public_id,
        "number": dispute.case_number,
        "category": categories.get(dispute.category, dispute.get_category_display()),
        "status": dispute.get_status_display(),
        "tone": tone,
        "symbol": symbol,
        "is_open": dispute.is_open,
        "created_at": dispute.created_at,
        "last_reply_at": getattr(dispute, "last_reply_at", None),
        "loan": dispute.loan,
        "payment": dispute.payment,
        "trade_no": dispute.channel_trade_no,
        "resolution": dispute.get_resolution_display() if dispute.resolution else "",
    }


def _message(message: Any, dispute: Dispute) -> dict[str, Any]:
    if message.author_id == dispute.borrower_id:
        who = _("You")
    elif message.author_id is None:
        who = _("Anxin Repay (automatic)")
    else:
        who = _("Customer support")
    return {
        "who": who,
        "mine": message.author_id == dispute.borrower_id,
        "body": message.body,
        "at": message.created_at,
    }
