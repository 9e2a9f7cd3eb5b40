"""Creating loan products and loans with their exact installment schedule."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from repayments.domain.money import parse_amount
from repayments.domain.schedule import build_schedule
from repayments.models import Installment, Loan, LoanProduct, User
from repayments.services.audit import audit_append
from repayments.services.errors import DuplicateContract, ProductInactive


def product_create(*, now: datetime, actor: User | None = None, **fields: Any) -> LoanProduct:
    """Create a loan product after validating every field and constraint.

    :raises django.core.exceptions.ValidationError: with a message per bad field.
    """
    product = LoanProduct(**fields)
    product.full_clean()
    with transaction.atomic():
        product.save()
        audit_append(
            action="product.created",
            object_type="loanproduct",
            object_id=product.pk,
            now=now,
            actor=actor,
            data={"code": product.code},
        )
    return product


def loan_create(
    *,
    borrower: User,
    product: LoanProduct,
    principal: Decimal | str,
    start_date: date,
    repayment_day: int,
    contract_number: str,
    vehicle: str,
    now: datetime,
    plate_number: str = "",
    actor: User | None = None,
) -> Loan:
    """Create a loan on ``product``'s terms together with its whole schedule.

    :raises InvalidAmount: for a malformed principal.
    :raises InvalidScheduleTerms: for terms no schedule can be built from.
    :raises ProductInactive: when the product is no longer offered.
    :raises DuplicateContract: when the contract number is taken.
    """
    if not product.is_active:
        raise ProductInactive()
    amount = parse_amount(principal)
    schedule = build_schedule(
        principal=amount,
        annual_rate_percent=product.annual_rate_percent,
        term_months=product.term_months,
        method=product.amortization_method,
        start_date=start_date,
        repayment_day=repayment_day,
        monthly_fee=product.monthly_fee,
    )
    try:
        with transaction.atomic():
            loan = Loan.objects.create(
                contract_number=contract_number,
                borrower=borrower,
                product=product,
                vehicle=vehicle,
                plate_number=plate_number,
                principal=amount,
                annual_rate_percent=product.annual_rate_percent,
                term_months=product.term_months,
                amortization_method=product.amortization_method,
                start_date=start_date,
                repayment_day=repayment_day,
            )
            Installment.objects.bulk_create(
                Installment(
                    loan=loan,
                    number=row.number,
                    due_date=row.due_date,
                    principal_due=row.principal,
                    interest_due=row.interest,
                    fee_due=row.fee,
                )
                for row in schedule
            )
            audit_append(
                action="loan.created",
                object_type="loan",
                object_id=loan.pk,
                now=now,
                actor=actor,
                data={"contract": contract_number, "principal": str(amount)},
            )
    except IntegrityError as exc:
        if Loan.objects.filter(contract_number=contract_number).exists():
            raise DuplicateContract() from exc
        raise
    return loan
