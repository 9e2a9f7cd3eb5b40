"""Loan products: the lender's terms and operating rules for a family of loans."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from repayments.domain.allocation import DEFAULT_ALLOCATION_ORDER, Component
from repayments.domain.schedule import AmortizationMethod as Method


class AmortizationMethod(models.TextChoices):
    EQUAL_INSTALLMENT = Method.EQUAL_INSTALLMENT.value, _("Equal installment (等额本息)")
    EQUAL_PRINCIPAL = Method.EQUAL_PRINCIPAL.value, _("Equal principal (等额本金)")


class PaymentMethodType(models.TextChoices):
    ALIPAY_BALANCE = "alipay_balance", _("Alipay (balance or debit card)")
    ALIPAY_HUABEI = "alipay_huabei", _("Alipay Huabei (credit)")
    WECHATPAY_BALANCE = "wechatpay_balance", _("WeChat Pay (balance or debit card)")
    WECHATPAY_CREDIT_CARD = "wechatpay_credit_card", _("WeChat Pay with a credit card")
    BANK_DEBIT_CARD = "bank_debit_card", _("Bank debit card withholding")
    BANK_CREDIT_CARD = "bank_credit_card", _("Bank credit card")


CREDIT_FUNDED_METHOD_TYPES = frozenset(
    {
        PaymentMethodType.ALIPAY_HUABEI,
        PaymentMethodType.WECHATPAY_CREDIT_CARD,
        PaymentMethodType.BANK_CREDIT_CARD,
    }
)


def default_allocation_order() -> list[str]:
    return [component.value for component in DEFAULT_ALLOCATION_ORDER]


def default_method_types() -> list[str]:
    return [m.value for m in PaymentMethodType if m not in CREDIT_FUNDED_METHOD_TYPES]


def validate_allocation_order(value: object) -> None:
    expected = {c.value for c in DEFAULT_ALLOCATION_ORDER}
    if not isinstance(value, list) or len(value) != len(expected) or set(value) != expected:
        raise ValidationError(
            _("List each of %(parts)s exactly once."), params={"parts": ", ".join(sorted(expected))}
        )


def validate_method_types(value: object) -> None:
    known = set(PaymentMethodType.values)
    if not isinstance(value, list) or not value or not set(value) <= known:
        raise ValidationError(
            _("Choose one or more of: %(known)s."), params={"known": ", ".join(sorted(known))}
        )


class LoanProduct(models.Model):
    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=100)
    amortization_method = models.CharField(
        _("amortization method"), max_length=20, choices=AmortizationMethod.choices
    )
    annual_rate_percent = models.DecimalField(
        _("annual interest rate (%)"),
        max_digits=7,
        decimal_places=4,
        validators=[MinValueValidator(0), MaxValueValidator(36)],
    )
    term_months = models.PositiveSmallIntegerField(
        _("term (months)"), validators=[MinValueValidator(1), MaxValueValidator(360)]
    )
    monthly_fee = models.DecimalField(
        _("monthly service fee"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(0)],
    )
    early_settlement_fee_percent = models.DecimalField(
        _("early-settlement fee (percent of outstanding principal)"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(0), MaxValueValidator(10)],
    )
    grace_days = models.PositiveSmallIntegerField(
        _("grace days"), default=3, validators=[MaxValueValidator(30)]
    )
    penalty_daily_rate_percent = models.DecimalField(
        _("late penalty per day (percent of overdue amount)"),
        max_digits=7,
        decimal_places=4,
        default=Decimal("0.0500"),
        validators=[MinValueValidator(0), MaxValueValidator(1)],
    )
    allocation_order = models.JSONField(
        _("allocation order"),
        default=default_allocation_order,
        validators=[validate_allocation_order],
        help_text=_("Order in which a payment pays the parts of an installment."),
    )
    allowed_method_types = models.JSONField(
        _("allowed payment methods"),
        default=default_method_types,
        validators=[validate_method_types],
        help_text=_("Credit-funded methods (Huabei, credit cards) are off unless listed."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("loan product")
        verbose_name_plural = _("loan products")
        constraints = [
            models.CheckConstraint(
                condition=Q(annual_rate_percent__gte=0, annual_rate_percent__lte=36),
                name="product_rate_range",
                violation_error_message=_("The annual rate must be between 0%% and 36%%."),
            ),
            models.CheckConstraint(
                condition=Q(term_months__gte=1, term_months__lte=360),
                name="product_term_range",
                violation_error_message=_("The term must be between 1 and 360 months."),
            ),
            models.CheckConstraint(
                condition=Q(monthly_fee__gte=0),
                name="product_fee_not_negative",
                violation_error_message=_("The monthly fee cannot be negative."),
            ),
            models.CheckConstraint(
                condition=Q(
                    early_settlement_fee_percent__gte=0, early_settlement_fee_percent__lte=10
                ),
                name="product_early_fee_range",
                violation_error_message=_("The early-settlement fee must be between 0%% and 10%%."),
            ),
            models.CheckConstraint(
                condition=Q(penalty_daily_rate_percent__gte=0, penalty_daily_rate_percent__lte=1),
                name="product_penalty_range",
                violation_error_message=_("The daily penalty rate must be between 0%% and 1%%."),
            ),
            models.CheckConstraint(
                condition=Q(grace_days__lte=30),
                name="product_grace_range",
                violation_error_message=_("Grace days must be 30 or fewer."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def components_in_order(self) -> list[Component]:
        return [Component(value) for value in self.allocation_order]
