"""Early-settlement quotes: a stored, expiring breakdown a payment can be bound to."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from repayments.domain.allocation import Component
from repayments.models.loans import Installment, Loan, money_field

COMPONENT_LABELS = {
    Component.PRINCIPAL: _("Outstanding principal"),
    Component.INTEREST: _("Interest to the settlement date"),
    Component.FEE: _("Fees"),
    Component.PENALTY: _("Late penalties"),
    Component.EARLY_SETTLEMENT_FEE: _("Early-settlement fee"),
}


class SettlementQuote(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, related_name="quotes", verbose_name=_("loan")
    )
    settlement_date = models.DateField(_("settlement date"))
    gross_total = money_field(_("amount owed"))
    credit_applied = money_field(_("credit balance used"))
    total = money_field(_("amount to pay"))
    computed_at = models.DateTimeField(_("computed at"))
    valid_until = models.DateTimeField(_("valid until"))

    class Meta:
        verbose_name = _("settlement quote")
        verbose_name_plural = _("settlement quotes")
        ordering = ["-computed_at"]

    def __str__(self) -> str:
        return f"{self.loan} {self.settlement_date} {self.total}"

    def breakdown(self) -> list[tuple[str, Decimal]]:
        """Return (label, amount) per component, in display order, credit last."""
        sums: dict[str, Decimal] = {}
        for line in self.lines.all():
            sums[line.component] = sums.get(line.component, Decimal("0.00")) + line.amount
        rows = [(str(label), sums[c.value]) for c, label in COMPONENT_LABELS.items() if c in sums]
        if self.credit_applied:
            rows.append((str(_("Credit balance")), -self.credit_applied))
        return rows


class SettlementQuoteLine(models.Model):
    """One due the quote covers: booking the settlement pays exactly these."""

    quote = models.ForeignKey(SettlementQuote, on_delete=models.CASCADE, related_name="lines")
    installment = models.ForeignKey(Installment, on_delete=models.PROTECT, null=True, blank=True)
    component = models.CharField(
        _("component"), max_length=30, choices=[(c.value, c.value) for c in Component]
    )
    amount = money_field(_("amount"))
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["quote_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["quote", "position"], name="quote_line_position_unique")
        ]

    def __str__(self) -> str:
        return f"{self.component} {self.amount}"
