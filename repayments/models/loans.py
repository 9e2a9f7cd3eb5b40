"""Loans, their installment schedule, and the cards borrowers bind for withholding."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

from repayments.domain.allocation import Component, InstallmentBalance
from repayments.models.products import AmortizationMethod, LoanProduct


def money_field(verbose_name: StrOrPromise, **options: Any) -> models.DecimalField:
    """Yuan with exactly two places (fen): the one way money is stored."""
    return models.DecimalField(verbose_name, max_digits=14, decimal_places=2, **options)


def record_token_field() -> models.BigIntegerField:
    """Raised by the database on every update (migration 0015), never by Django; a new
    row starts at 0. The borrower's record page is cached under the count and sum of
    these (``repayments.selectors.record_stamp``), so any write, even raw SQL, is seen."""
    return models.BigIntegerField(default=0, db_default=0, editable=False)


ZERO = Decimal("0.00")


class LoanStatus(models.TextChoices):
    ACTIVE = "active", _("Repaying")
    SETTLED = "settled", _("Paid off")
    SETTLED_EARLY = "settled_early", _("Settled early")


class Loan(models.Model):
    contract_number = models.CharField(_("contract number"), max_length=40, unique=True)
    borrower = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="loans",
        verbose_name=_("borrower"),
    )
    product = models.ForeignKey(
        LoanProduct, on_delete=models.PROTECT, related_name="loans", verbose_name=_("loan product")
    )
    vehicle = models.CharField(_("vehicle"), max_length=120)
    record_token = record_token_field()
    plate_number = models.CharField(_("plate number"), max_length=12, blank=True)
    principal = money_field(_("principal"))
    # Contract terms are copied from the product: later product edits never
    # change a signed loan.
    annual_rate_percent = models.DecimalField(
        _("annual interest rate (%)"), max_digits=7, decimal_places=4
    )
    term_months = models.PositiveSmallIntegerField(_("term (months)"))
    amortization_method = models.CharField(
        _("amortization method"), max_length=20, choices=AmortizationMethod.choices
    )
    start_date = models.DateField(_("start date"))
    repayment_day = models.PositiveSmallIntegerField(_("repayment day of month"))
    status = models.CharField(
        _("status"), max_length=20, choices=LoanStatus.choices, default=LoanStatus.ACTIVE
    )
    credit_balance = money_field(_("credit balance"), default=ZERO)
    settled_date = models.DateField(_("settled on"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("loan")
        verbose_name_plural = _("loans")
        ordering = ["-start_date", "contract_number"]
        constraints = [
            models.CheckConstraint(condition=Q(principal__gt=0), name="loan_principal_positive"),
            models.CheckConstraint(
                condition=Q(credit_balance__gte=0), name="loan_credit_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(repayment_day__gte=1, repayment_day__lte=28),
                name="loan_repayment_day_range",
            ),
        ]

    def __str__(self) -> str:
        return self.contract_number


class Installment(models.Model):
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, related_name="installments", verbose_name=_("loan")
    )
    number = models.PositiveSmallIntegerField(_("number"))
    due_date = models.DateField(_("due date"))
    principal_due = money_field(_("principal due"))
    interest_due = money_field(_("interest due"))
    fee_due = money_field(_("fee due"), default=ZERO)
    penalty_due = money_field(_("penalty due"), default=ZERO)
    principal_paid = money_field(_("principal paid"), default=ZERO)
    interest_paid = money_field(_("interest paid"), default=ZERO)
    fee_paid = money_field(_("fee paid"), default=ZERO)
    penalty_paid = money_field(_("penalty paid"), default=ZERO)
    penalty_accrued_through = models.DateField(null=True, blank=True)
    # The value date of the payment that completed this installment (rule 7).
    paid_value_date = models.DateField(_("paid on (value date)"), null=True, blank=True)
    paid_on_time = models.BooleanField(_("paid on time"), null=True, blank=True)

    class Meta:
        verbose_name = _("installment")
        verbose_name_plural = _("installments")
        ordering = ["loan_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["loan", "number"], name="installment_number_unique"),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{part}_paid__gte": 0})
                    & Q(**{f"{part}_paid__lte": F(f"{part}_due")})
                    & Q(**{f"{part}_due__gte": 0}),
                    name=f"installment_{part}_paid_within_due",
                )
                for part in ("principal", "interest", "fee", "penalty")
            ],
        ]

    def __str__(self) -> str:
        return str(_("Installment %(number)s") % {"number": self.number})

    def outstanding(self) -> dict[Component, Decimal]:
        return {
            Component.PENALTY: self.penalty_due - self.penalty_paid,
            Component.FEE: self.fee_due - self.fee_paid,
            Component.INTEREST: self.interest_due - self.interest_paid,
            Component.PRINCIPAL: self.principal_due - self.principal_paid,
        }

    def balance(self) -> InstallmentBalance:
        return InstallmentBalance(self.pk, self.due_date, self.outstanding())

    @property
    def total_due(self) -> Decimal:
        return self.principal_due + self.interest_due + self.fee_due + self.penalty_due

    @property
    def total_paid(self) -> Decimal:
        return self.principal_paid + self.interest_paid + self.fee_paid + self.penalty_paid

    @property
    def is_paid(self) -> bool:
        return self.total_paid >= self.total_due


class BoundCard(models.Model):
    """A card the borrower authorised for withholding: channel token and masked number only."""

    borrower = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bound_cards"
    )
    channel = models.CharField(_("channel"), max_length=20)
    card_token = models.CharField(_("channel card token"), max_length=64, unique=True)
    card_masked = models.CharField(_("card number (masked)"), max_length=24)
    bank_name = models.CharField(_("bank"), max_length=40)
    is_credit = models.BooleanField(_("credit card"), default=False)
    priority = models.PositiveSmallIntegerField(_("priority"), default=1)
    verified_until = models.DateField(_("authorisation valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    record_token = record_token_field()

    class Meta:
        verbose_name = _("bound card")
        verbose_name_plural = _("bound cards")
        ordering = ["borrower_id", "priority"]

    def __str__(self) -> str:
        return f"{self.bank_name} {self.card_masked}"
