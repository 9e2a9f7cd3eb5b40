"""Installment schedules for car loans: 等额本息 and 等额本金.

Pure Python, no Django: the models and services store what this module
computes, so the maths can be tested and reasoned about on its own.

Interest is charged monthly on the declining balance and rounded to fen
(ROUND_HALF_UP) each month, as Chinese bank calculators do. Because every
stored amount is rounded, the final installment absorbs the rounding so that
the principal repaid always equals the loan principal exactly.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from decimal import Decimal, localcontext

from repayments.domain.errors import DomainError
from repayments.domain.money import FEN, MAX_AMOUNT, ZERO, round_fen

# Enough digits that (1 + r) ** 360 keeps every fen of a 12-digit principal.
_PRECISION = 40
MIN_TERM_MONTHS = 1
MAX_TERM_MONTHS = 360
MAX_ANNUAL_RATE_PERCENT = Decimal(36)
# Day 28 exists in every month, so a due date never has to be moved.
MAX_REPAYMENT_DAY = 28


class AmortizationMethod(enum.StrEnum):
    """How principal is spread over the term; values match the Django choices."""

    EQUAL_INSTALLMENT = "equal_installment"  # 等额本息
    EQUAL_PRINCIPAL = "equal_principal"  # 等额本金


class InvalidScheduleTerms(DomainError):
    """The loan terms cannot produce a repayment schedule."""

    code = "invalid_schedule_terms"


@dataclass(frozen=True)
class ScheduledInstallment:
    """One row of a repayment schedule, every amount in fen-rounded yuan."""

    number: int
    due_date: datetime.date
    principal: Decimal
    interest: Decimal
    fee: Decimal
    opening_balance: Decimal
    closing_balance: Decimal

    @property
    def total(self) -> Decimal:
        """What the borrower pays for this installment."""
        return self.principal + self.interest + self.fee


def monthly_rate(annual_rate_percent: Decimal) -> Decimal:
    """Convert an annual percentage rate to an unrounded monthly fraction (4.9 -> 0.0040833...)."""
    rate = _check_decimal("annual rate", annual_rate_percent)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return rate / 12 / 100


def due_date_for(*, start_date: datetime.date, repayment_day: int, number: int) -> datetime.date:
    """Return the due date of installment ``number`` (1-based).

    It falls on ``repayment_day`` of the month ``number`` months after the
    month of ``start_date``; the day of ``start_date`` itself does not matter.
    """
    if not isinstance(start_date, datetime.date):
        raise InvalidScheduleTerms(f"start date must be a date, got {type(start_date).__name__}")
    _check_int("repayment day", repayment_day, 1, MAX_REPAYMENT_DAY)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidScheduleTerms(f"installment number must be 1 or more, got {number!r}")
    months = start_date.year * 12 + (start_date.month - 1) + number
    return datetime.date(months // 12, months % 12 + 1, repayment_day)


def build_schedule(
    *,
    principal: Decimal,
    annual_rate_percent: Decimal,
    term_months: int,
    method: AmortizationMethod | str,
    start_date: datetime.date,
    repayment_day: int,
    monthly_fee: Decimal = ZERO,
) -> list[ScheduledInstallment]:
    """Compute the full installment schedule of a loan.

    Every installment pays interest on the balance it opens with. The last one
    repays whatever principal is left, so rounding never leaves a residue.

    :raises InvalidScheduleTerms: if any term is out of range (see the module
        constants) or ``method`` is not an :class:`AmortizationMethod`.
    """
    principal = _check_amount("principal", principal, allow_zero=False)
    monthly_fee = _check_amount("monthly fee", monthly_fee, allow_zero=True)
    rate = _check_rate(annual_rate_percent)
    _check_int("term", term_months, MIN_TERM_MONTHS, MAX_TERM_MONTHS, unit=" months")
    _check_int("repayment day", repayment_day, 1, MAX_REPAYMENT_DAY)
    method = _check_method(method)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _amortize(
            principal=principal,
            rate=monthly_rate(rate),
            term_months=term_months,
            method=method,
            dates=[
                due_date_for(start_date=start_date, repayment_day=repayment_day, number=n)
                for n in range(1, term_months + 1)
            ],
            monthly_fee=monthly_fee,
        )


def _amortize(
    *,
    principal: Decimal,
    rate: Decimal,
    term_months: int,
    method: AmortizationMethod,
    dates: list[datetime.date],
    monthly_fee: Decimal,
) -> list[ScheduledInstallment]:
    level = _level_amount(principal, rate, term_months, method)
    installments = []
    balance = principal
    for number, due_date in enumerate(dates, start=1):
        interest = round_fen(balance * rate)
        if number == term_months:
            part = balance
        else:
            part = _principal_part(method, rate, level, interest, balance)
        installments.append(
            ScheduledInstallment(
                number=number,
                due_date=due_date,
                principal=part,
                interest=interest,
                fee=monthly_fee,
                opening_balance=balance,
                closing_balance=balance - part,
            )
        )
        balance -= part
    return installments


def _principal_part(
    method: AmortizationMethod, rate: Decimal, level: Decimal, interest: Decimal, balance: Decimal
) -> Decimal:
    """Principal repaid by an installment other than the last."""
    part = level - interest if method is AmortizationMethod.EQUAL_INSTALLMENT and rate else level
    # Rounding the level amount up can, for tiny loans or long terms at high
    # rates, repay the loan before the last month; never go below zero.
    return min(part, balance)


def _level_amount(
    principal: Decimal, rate: Decimal, term_months: int, method: AmortizationMethod
) -> Decimal:
    """The fixed monthly payment (等额本息) or fixed monthly principal (等额本金 or 0%)."""
    if method is AmortizationMethod.EQUAL_PRINCIPAL or not rate:
        return round_fen(principal / term_months)
    growth = (1 + rate) ** term_months
    return round_fen(principal * rate * growth / (growth - 1))


def _check_amount(name: str, value: object, *, allow_zero: bool) -> Decimal:
    amount = _check_decimal(name, value)
    if amount < 0 or (amount == 0 and not allow_zero):
        limit = "must not be negative" if allow_zero else "must be greater than zero"
        raise InvalidScheduleTerms(f"{name} {limit}, got {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidScheduleTerms(f"{name} must be at most {MAX_AMOUNT}, got {amount}")
    if amount != amount.quantize(FEN):
        raise InvalidScheduleTerms(
            f"{name} must be a whole number of fen (two decimal places), got {amount}"
        )
    return amount.quantize(FEN)


def _check_rate(value: object) -> Decimal:
    rate = _check_decimal("annual rate", value)
    if not 0 <= rate <= MAX_ANNUAL_RATE_PERCENT:
        raise InvalidScheduleTerms(
            f"annual rate must be between 0 and {MAX_ANNUAL_RATE_PERCENT} percent, got {rate}"
        )
    return rate


def _check_decimal(name: str, value: object) -> Decimal:
    # Floats are refused outright: 0.1 is not a fen amount, and mixing
    # floats into Decimal maths silently loses the exactness we promise.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidScheduleTerms(f"{name} must be a Decimal, got {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise InvalidScheduleTerms(f"{name} must be a finite number, got {amount}")
    # -0 is a valid Decimal but would surface as "-0.00" in stored amounts.
    return amount.copy_abs() if amount.is_zero() else amount


def _check_int(name: str, value: object, low: int, high: int, *, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidScheduleTerms(f"{name} must be between {low} and {high}{unit}, got {value!r}")


def _check_method(method: object) -> AmortizationMethod:
    try:
        if not isinstance(method, str):
            raise TypeError(method)
        return AmortizationMethod(method)
    except (ValueError, TypeError):
        expected = " or ".join(repr(m.value) for m in AmortizationMethod)
        raise InvalidScheduleTerms(
            f"unknown amortization method {method!r}, expected {expected}"
        ) from None
