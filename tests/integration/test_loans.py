from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from repayments.domain.money import InvalidAmount
from repayments.domain.schedule import InvalidScheduleTerms
from repayments.models import AuditEntry, Installment, Loan, LoanProduct
from repayments.services.errors import DuplicateContract

pytestmark = pytest.mark.django_db


def test_loan_schedule_is_stored_exactly(make_loan) -> None:
    loan = make_loan(principal="100000.00", annual_rate_percent=Decimal("6.0000"), term_months=12)
    rows = list(loan.installments.order_by("number"))
    assert len(rows) == 12
    assert sum(r.principal_due for r in rows) == Decimal("100000.00")
    # 100,000 at 6% over 12 months: the published level payment is 8,606.64.
    assert rows[0].principal_due + rows[0].interest_due == Decimal("8606.64")
    assert rows[0].due_date == date(2026, 2, 5)
    assert AuditEntry.objects.filter(action="loan.created", object_id=str(loan.pk)).exists()


def test_loan_copies_contract_terms_from_product(make_loan) -> None:
    loan = make_loan(annual_rate_percent=Decimal("7.2000"))
    LoanProduct.objects.filter(pk=loan.product_id).update(annual_rate_percent=Decimal("9.9"))
    loan.refresh_from_db()
    assert loan.annual_rate_percent == Decimal("7.2000")


def test_negative_rate_product_is_refused_with_a_named_error(make_product) -> None:
    with translation.override("en"):
        with pytest.raises(ValidationError) as caught:
            make_product(annual_rate_percent=Decimal("-1.0000"))
        messages = caught.value.message_dict
    assert messages == {"annual_rate_percent": ["Ensure this value is greater than or equal to 0."]}
    assert not LoanProduct.objects.exists()


def test_field_errors_are_translated(make_product) -> None:
    with translation.override("zh-hans"):
        with pytest.raises(ValidationError) as caught:
            make_product(annual_rate_percent=Decimal("-1.0000"))
        messages = caught.value.message_dict
    assert messages["annual_rate_percent"] == ["确保该值大于或等于0。"]


def test_product_allocation_order_must_name_each_part_once(make_product) -> None:
    with pytest.raises(ValidationError) as caught:
        make_product(allocation_order=["principal", "principal", "fee", "interest"])
    assert "allocation_order" in caught.value.message_dict


def test_zero_month_term_is_refused(make_product, make_borrower, now) -> None:
    with translation.override("en"):
        with pytest.raises(ValidationError) as caught:
            make_product(term_months=0)
        messages = caught.value.message_dict
    assert "greater than or equal to 1" in messages["term_months"][0]


def test_three_decimal_principal_leaves_nothing_behind(make_loan) -> None:
    with pytest.raises(InvalidAmount, match="more than two decimal places"):
        make_loan(principal="100000.005")
    assert not Loan.objects.exists()
    assert not Installment.objects.exists()


def test_schedule_terms_checked_before_anything_is_written(
    make_product, make_borrower, now
) -> None:
    from repayments.services.loans import loan_create

    product = make_product()
    with pytest.raises(InvalidScheduleTerms, match="repayment"):
        loan_create(
            borrower=make_borrower(),
            product=product,
            principal="1000.00",
            start_date=date(2026, 1, 5),
            repayment_day=31,
            contract_number="X-1",
            vehicle="car",
            now=now,
        )
    assert not Loan.objects.exists()


def test_duplicate_contract_number_is_a_domain_error(
    make_loan, make_product, make_borrower, now
) -> None:
    from repayments.services.loans import loan_create

    loan = make_loan()
    with pytest.raises(DuplicateContract):
        loan_create(
            borrower=make_borrower(),
            product=make_product(),
            principal="1000.00",
            start_date=date(2026, 1, 5),
            repayment_day=5,
            contract_number=loan.contract_number,
            vehicle="car",
            now=now,
        )
    assert Loan.objects.count() == 1
