"""Receipts of succeeded payments: a printable page and the same receipt as a PDF.

(``portal/views/receipts.py`` is something else: the SMS delivery-receipt webhook.)

Both render :func:`repayments.services.receipts.receipt_build`. The PDF uses
ReportLab's built-in CID font STSong-Light for Chinese, so no font file ships with
the project; text that fits Latin-1 (numbers, order numbers) is set in Helvetica.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from portal.presenters import METHOD_WORDS
from portal.views.payflow import user_of
from repayments.domain.money import format_yuan
from repayments.models import PaymentMethodType
from repayments.selectors import cards_for_borrower
from repayments.selectors_borrower import succeeded_payment_for_borrower
from repayments.services.receipts import Receipt, installments_words, receipt_build

CJK_FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
LATIN_BOLD = "Helvetica-Bold"
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


@login_required
@require_GET
def receipt_page(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The printable receipt (print CSS hides everything but the receipt)."""
    receipt = _own_receipt(request, public_id)
    context = {
        "receipt": receipt,
        "installments": installments_words(receipt),
        "method": receipt_method_words(receipt),
    }
    return render(request, "portal/receipt.html", context)


@login_required
@require_GET
def receipt_pdf(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The same receipt as a PDF download."""
    receipt = _own_receipt(request, public_id)
    response = HttpResponse(receipt_pdf_bytes(receipt), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{receipt.receipt_number}.pdf"'
    return response


def _own_receipt(request: HttpRequest, public_id: UUID) -> Receipt:
    """Another borrower's payment, or one that has not succeeded, has no receipt: 404."""
    borrower = user_of(request)
    payment = succeeded_payment_for_borrower(borrower=borrower, public_id=public_id)
    if payment is None:
        raise Http404
    return receipt_build(
        payment=payment, cards=cards_for_borrower(borrower=borrower), now=timezone.now()
    )


# --- PDF ---------------------------------------------------------------------------------


def _fits_latin(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _style(size: float, *, bold: bool = False, align: int = 0) -> dict[str, ParagraphStyle]:
    """Two variants of one style: Helvetica for Latin-1 text, STSong-Light otherwise."""
    latin = ParagraphStyle(
        f"latin-{size}-{bold}-{align}",
        fontName=LATIN_BOLD if bold else LATIN_FONT,
        fontSize=size,
        leading=size * 1.35,
        alignment=align,
    )
    cjk = ParagraphStyle(
        f"cjk-{size}-{bold}-{align}",
        fontName=CJK_FONT,
        fontSize=size,
        leading=size * 1.35,
        alignment=align,
        wordWrap="CJK",
    )
    return {"latin": latin, "cjk": cjk}


def _p(text: object, style: dict[str, ParagraphStyle]) -> Paragraph:
    value = str(text)
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Paragraph(escaped, style["latin" if _fits_latin(value) else "cjk"])


def receipt_pdf_bytes(receipt: Receipt) -> bytes:
    """Lay out ``receipt`` on one A4 page (more if it has many lines)."""
    title, body, small = _style(16, bold=True), _style(10), _style(8)
    right = _style(10, align=2)
    head = _style(10, bold=True)
    buffer = BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"{_('Repayment receipt')} {receipt.receipt_number}",
        author="安心还款 Anxin Repay",
    )
    story: list[Flowable] = [
        _p(_("Anxin Repay car-loan repayment receipt"), title),
        Spacer(1, 4 * mm),
    ]
    facts = [
        (_("Receipt number"), receipt.receipt_number),
        (_("Contract number"), receipt.contract_number),
        (_("Vehicle"), receipt.vehicle),
        (_("Borrower"), f"{receipt.borrower_name} {receipt.borrower_phone}".strip()),
        (_("Purpose"), receipt.purpose),
        (_("Amount paid"), format_yuan(receipt.amount)),
        (_("Installments"), installments_words(receipt) or "—"),
        (_("Paid on (value date)"), receipt.value_date.isoformat() if receipt.value_date else "—"),
        (
            _("Confirmed"),
            timezone.localtime(receipt.confirmed_at).strftime("%Y-%m-%d %H:%M")
            if receipt.confirmed_at
            else "—",
        ),
        (_("Channel"), receipt.channel),
        (_("Method"), receipt_method_words(receipt)),
        (receipt.channel_trade_no_label, receipt.channel_trade_no or "—"),
        (_("Our order number"), receipt.order_number),
    ]
    story.append(_table([[_p(k, body), _p(v, body)] for k, v in facts], [45 * mm, None]))
    story += [Spacer(1, 6 * mm), _p(_("How the payment was applied"), head), Spacer(1, 2 * mm)]
    rows = [
        [
            _p(_("Installment"), head),
            _p(_("Item"), head),
            _p(_("Amount"), _style(10, bold=True, align=2)),
        ]
    ]
    previous: object = object()  # name each installment once, on its first line
    for line in receipt.lines:
        same = line.installment_number == previous
        previous = line.installment_number
        rows.append(
            [
                "" if same else _p(_installment_cell(line.installment_number, line.due_date), body),
                _p(line.component, body),
                _p(format_yuan(line.amount), right),
            ]
        )
    if receipt.credit_applied:
        rows.append(
            [
                "",
                _p(_("Paid from your credit balance"), body),
                _p(f"-{format_yuan(receipt.credit_applied)}", right),
            ]
        )
    if receipt.credit_added:
        rows.append(
            [
                "",
                _p(_("Kept as credit for your next installment"), body),
                _p(format_yuan(receipt.credit_added), right),
            ]
        )
    rows.append(
        [
            "",
            _p(_("Total paid"), head),
            _p(format_yuan(receipt.amount), _style(10, bold=True, align=2)),
        ]
    )
    breakdown = _table(rows, [40 * mm, None, 40 * mm], header=True)
    story += [
        breakdown,
        Spacer(1, 8 * mm),
        _p(
            _(
                "Issued %(when)s by Anxin Repay. "
                "This receipt was generated from our records of the payment."
            )
            % {"when": timezone.localtime(receipt.issued_at).strftime("%Y-%m-%d %H:%M")},
            small,
        ),
    ]
    doc.build(story)
    return buffer.getvalue()


def _table(rows: list[list[Any]], widths: list[Any], *, header: bool = False) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    commands: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#d0d5dd")),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f2f4f7")))
    table.setStyle(TableStyle(commands))
    return table


def _installment_cell(number: int | None, due: Any) -> str:
    if number is None:
        return _("Whole loan")
    return f"{_('Installment %(number)s') % {'number': number}} ({due.isoformat()})"


def receipt_method_words(receipt: Receipt) -> str:
    """The method as the record page names it, with the card's last four when known."""
    if not receipt.method_type:
        return ""
    method = str(METHOD_WORDS.get(PaymentMethodType(receipt.method_type), receipt.method))
    if receipt.card_tail:
        return _("%(method)s, card ending %(last4)s") % {
            "method": method,
            "last4": receipt.card_tail,
        }
    return method
