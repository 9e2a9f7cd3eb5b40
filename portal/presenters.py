"""Turn domain objects into plain display data, so templates never compare status strings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _

from repayments.domain.money import ZERO, round_fen
from repayments.models import Loan, LoanStatus


@dataclass(frozen=True)
class LoanCard:
    contract_number: str
    vehicle: str
    principal: Decimal
    principal_repaid: Decimal
    installments_left: int
    status_label: str
    tone: str  # ok | warn | done


def loan_cards(loans: Iterable[Loan]) -> list[LoanCard]:
    cards = []
    for loan in loans:
        if loan.status != LoanStatus.ACTIVE:
            label, tone = loan.get_status_display(), "done"
        elif getattr(loan, "is_overdue", False):
            label, tone = _("Overdue: please repay soon"), "warn"
        else:
            label, tone = _("Repaying on schedule"), "ok"
        cards.append(
            LoanCard(
                contract_number=loan.contract_number,
                vehicle=loan.vehicle,
                principal=loan.principal,
                principal_repaid=round_fen(getattr(loan, "principal_repaid", None) or ZERO),
                installments_left=getattr(loan, "installments_left", 0),
                status_label=str(label),
                tone=tone,
            )
        )
    return cards
