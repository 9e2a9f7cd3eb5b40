"""Installment-schedule maths: published figures, invariants and bad input.

Pure-Python module, so no database and no Django fixtures.
"""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repayments.domain.errors import DomainError
from repayments.domain.money import ZERO, round_fen
from repayments.domain.schedule import (
    AmortizationMethod,
    InvalidScheduleTerms,
    ScheduledInstallment,
    build_schedule,
    due_date_for,
    monthly_rate,
)

EI = AmortizationMethod.EQUAL_INSTALLMENT
EP = AmortizationMethod.EQUAL_PRINCIPAL
START = datetime.date(2024, 1, 10)


def schedule(principal: str, rate: str, term: int, method=EI, **kwargs) -> list:
    return build_schedule(
        principal=Decimal(principal),
        annual_rate_percent=Decimal(rate),
        term_months=term,
        method=method,
        start_date=kwargs.pop("start_date", START),
        repayment_day=kwargs.pop("repayment_day", 15),
        **kwargs,
    )


def fen(minimum: int, maximum: int) -> st.SearchStrategy[Decimal]:
    """Two-place Decimals built from whole fen, so no float ever appears."""
    return st.integers(minimum, maximum).map(lambda n: Decimal(n).scaleb(-2))


# --- published figures -----------------------------------------------------
# The 1,000,000 yuan / 30 years / 4.9% figures are the ones every Chinese bank
# mortgage/loan calculator publishes (4.9% was the PBoC 5+ year benchmark rate).


def test_published_equal_installment_1m_30y_4_9() -> None:
    rows = schedule("1000000.00", "4.9", 360, EI)
    assert {row.total for row in rows[:-1]} == {Decimal("5307.27")}
    assert rows[0].interest == Decimal("4083.33")
    assert rows[0].principal == Decimal("1223.94")
    # Calculators quote 5,307.27 x 360 - 1,000,000 = 910,617.20 of interest; our
    # last installment carries the accumulated fen rounding (5,305.19 instead of
    # 5,307.27), so the exact rounded-monthly total is 2.08 less.
    assert rows[-1].total == Decimal("5305.19")
    assert sum(row.interest for row in rows) == Decimal("910615.12")


def test_published_equal_principal_1m_30y_4_9() -> None:
    rows = schedule("1000000.00", "4.9", 360, EP)
    first = rows[0]
    assert (first.principal, first.interest, first.total) == (
        Decimal("2777.78"),
        Decimal("4083.33"),
        Decimal("6861.11"),
    )
    # Each month's interest falls by 2,777.78 x 4.9%/12 = 11.3426..., so the
    # rounded decrease is 11.34 with an occasional 11.35 when rounding tips over.
    decreases = {rows[k].total - rows[k + 1].total for k in range(len(rows) - 2)}
    assert decreases == {Decimal("11.34"), Decimal("11.35")}
    # The published 737,041.67 is the unrounded formula P*r*(n+1)/2. Rounding the
    # monthly principal up to 2,777.78 repays slightly faster and each month's
    # interest is rounded to fen, so the exact schedule charges 0.59 less.
    assert sum(row.interest for row in rows) == Decimal("737041.08")
    assert rows[-1].principal == Decimal("2776.98")


@pytest.mark.parametrize(
    ("principal", "rate", "term", "payment"),
    [
        # The classic English-language mortgage textbook example.
        ("200000.00", "6.5", 360, "1264.14"),
        ("100000.00", "6", 12, "8606.64"),
    ],
)
def test_published_level_payments(principal: str, rate: str, term: int, payment: str) -> None:
    rows = schedule(principal, rate, term, EI)
    assert {row.total for row in rows[:-1]} == {Decimal(payment)}


# --- smaller behaviours ------------------------------------------------------


def test_monthly_rate_is_unrounded() -> None:
    assert monthly_rate(Decimal("4.9")) * 1200 == Decimal("4.9")
    assert monthly_rate(Decimal(6)) == Decimal("0.005")


def test_zero_rate_spreads_principal_evenly() -> None:
    for method in AmortizationMethod:
        rows = schedule("1000.00", "0", 3, method)
        assert [row.principal for row in rows] == [
            Decimal("333.33"),
            Decimal("333.33"),
            Decimal("333.34"),
        ]
        assert all(row.interest == ZERO for row in rows)


def test_monthly_fee_is_added_to_every_total() -> None:
    rows = schedule("100000.00", "6", 12, EI, monthly_fee=Decimal("25.00"))
    assert all(row.fee == Decimal("25.00") for row in rows)
    assert rows[0].total == Decimal("8631.64")


def test_method_may_be_given_as_its_string_value() -> None:
    assert schedule("5000.00", "5", 6, "equal_principal") == schedule("5000.00", "5", 6, EP)


def test_single_month_term_repays_everything_at_once() -> None:
    (row,) = schedule("1200.00", "12", 1, EI)
    assert (row.principal, row.interest, row.closing_balance) == (
        Decimal("1200.00"),
        Decimal("12.00"),
        ZERO,
    )


def test_tiny_loan_never_overpays_principal() -> None:
    # round_fen(1.00 / 200) = 0.01, and 199 x 0.01 would exceed the loan.
    rows = schedule("1.00", "0", 200, EP)
    assert sum(row.principal for row in rows) == Decimal("1.00")
    assert all(row.closing_balance >= 0 for row in rows)


def test_installment_is_frozen() -> None:
    row = schedule("1000.00", "5", 2)[0]
    assert isinstance(row, ScheduledInstallment)
    with pytest.raises(AttributeError):
        row.principal = ZERO  # type: ignore[misc]


# --- due dates ---------------------------------------------------------------


def test_due_dates_cross_the_year_end() -> None:
    start = datetime.date(2024, 11, 20)
    dates = [due_date_for(start_date=start, repayment_day=5, number=n) for n in (1, 2, 3, 14)]
    assert dates == [
        datetime.date(2024, 12, 5),
        datetime.date(2025, 1, 5),
        datetime.date(2025, 2, 5),
        datetime.date(2026, 1, 5),
    ]


@pytest.mark.parametrize(
    ("start", "number", "expected"),
    [
        (datetime.date(2024, 1, 31), 1, datetime.date(2024, 2, 28)),
        (datetime.date(2023, 12, 31), 2, datetime.date(2024, 2, 28)),
        (datetime.date(2024, 3, 31), 1, datetime.date(2024, 4, 28)),
        (datetime.date(2024, 8, 31), 6, datetime.date(2025, 2, 28)),
    ],
)
def test_due_dates_from_the_31st(
    start: datetime.date, number: int, expected: datetime.date
) -> None:
    assert due_date_for(start_date=start, repayment_day=28, number=number) == expected


def test_due_date_day_is_independent_of_start_day() -> None:
    start = datetime.date(2024, 5, 31)
    assert due_date_for(start_date=start, repayment_day=1, number=1) == datetime.date(2024, 6, 1)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"repayment_day": 29, "number": 1}, "repayment day must be between 1 and 28"),
        ({"repayment_day": 0, "number": 1}, "repayment day must be between 1 and 28"),
        ({"repayment_day": 10, "number": 0}, "installment number must be 1 or more"),
    ],
)
def test_due_date_for_rejects_bad_input(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InvalidScheduleTerms, match=fragment):
        due_date_for(start_date=START, **kwargs)


# --- bad input -----------------------------------------------------------------

GOOD: dict[str, Any] = {
    "principal": Decimal("10000.00"),
    "annual_rate_percent": Decimal(5),
    "term_months": 12,
    "method": EI,
    "start_date": START,
    "repayment_day": 15,
}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"term_months": 0}, "term must be between 1 and 360 months, got 0"),
        ({"term_months": 361}, "term must be between 1 and 360 months, got 361"),
        ({"term_months": True}, "term must be between 1 and 360 months"),
        ({"principal": Decimal(0)}, "principal must be greater than zero, got 0"),
        ({"principal": Decimal("-5.00")}, "principal must be greater than zero, got -5.00"),
        ({"principal": Decimal("100.005")}, "principal must be a whole number of fen"),
        ({"principal": Decimal("NaN")}, "principal must be a finite number"),
        ({"principal": Decimal("1E+13")}, "principal must be at most 999999999999.99"),
        ({"principal": "100.00"}, "principal must be a Decimal, got str"),
        ({"annual_rate_percent": Decimal("-0.01")}, "annual rate must be between 0 and 36"),
        ({"annual_rate_percent": Decimal("36.0001")}, "annual rate must be between 0 and 36"),
        ({"annual_rate_percent": Decimal("Infinity")}, "annual rate must be a finite number"),
        ({"repayment_day": 0}, "repayment day must be between 1 and 28, got 0"),
        ({"repayment_day": 29}, "repayment day must be between 1 and 28, got 29"),
        ({"monthly_fee": Decimal("-1.00")}, "monthly fee must not be negative, got -1.00"),
        ({"monthly_fee": Decimal("0.001")}, "monthly fee must be a whole number of fen"),
        ({"method": "balloon"}, "unknown amortization method 'balloon'"),
        ({"method": None}, "unknown amortization method None"),
        ({"start_date": "2024-01-10"}, "start date must be a date"),
    ],
)
def test_build_schedule_rejects_bad_terms(override: dict, message: str) -> None:
    with pytest.raises(InvalidScheduleTerms) as raised:
        build_schedule(**{**GOOD, **override})
    assert message in str(raised.value)
    assert raised.value.code == "invalid_schedule_terms"
    assert isinstance(raised.value, DomainError)


def test_floats_are_refused() -> None:
    with pytest.raises(InvalidScheduleTerms, match="principal must be a Decimal, got float"):
        build_schedule(**{**GOOD, "principal": 1000.0})
    with pytest.raises(InvalidScheduleTerms, match="annual rate must be a Decimal, got float"):
        monthly_rate(4.9)  # type: ignore[arg-type]


def test_negative_zero_is_normalised() -> None:
    rows = build_schedule(
        **{**GOOD, "annual_rate_percent": Decimal("-0"), "monthly_fee": Decimal("-0.00")}
    )
    assert all(str(row.interest) == "0.00" and str(row.fee) == "0.00" for row in rows)


def test_boundaries_are_accepted() -> None:
    rows = build_schedule(
        **{**GOOD, "term_months": 360, "annual_rate_percent": Decimal(36), "repayment_day": 28}
    )
    assert len(rows) == 360
    assert len(build_schedule(**{**GOOD, "term_months": 1, "repayment_day": 1})) == 1


# --- properties ------------------------------------------------------------------

loan_terms = st.fixed_dictionaries(
    {
        "principal": fen(1, 500_000_000),
        # 0 .. 36 percent with up to four decimal places.
        "annual_rate_percent": st.integers(0, 360_000).map(lambda n: Decimal(n).scaleb(-4)),
        "term_months": st.integers(1, 360),
        "method": st.sampled_from(AmortizationMethod),
        "start_date": st.dates(datetime.date(2000, 1, 1), datetime.date(2100, 12, 31)),
        "repayment_day": st.integers(1, 28),
        "monthly_fee": fen(0, 100_000),
    }
)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(terms=loan_terms)
def test_principal_is_repaid_exactly_and_balances_chain(terms: dict) -> None:
    rows = build_schedule(**terms)
    assert len(rows) == terms["term_months"]
    assert [row.number for row in rows] == list(range(1, len(rows) + 1))
    assert sum(row.principal for row in rows) == terms["principal"]
    assert rows[0].opening_balance == terms["principal"]
    assert rows[-1].closing_balance == ZERO
    for row in rows:
        assert row.closing_balance == row.opening_balance - row.principal
    for before, after in itertools.pairwise(rows):
        assert after.opening_balance == before.closing_balance
        assert after.closing_balance <= before.closing_balance


@PROPERTY_SETTINGS
@given(terms=loan_terms)
def test_amounts_are_non_negative_fen(terms: dict) -> None:
    for row in build_schedule(**terms):
        for amount in (row.principal, row.interest, row.fee, row.closing_balance):
            assert amount >= 0
            assert amount.as_tuple().exponent == -2


@PROPERTY_SETTINGS
@given(terms=loan_terms)
def test_due_dates_increase_on_the_repayment_day(terms: dict) -> None:
    rows = build_schedule(**terms)
    assert all(row.due_date.day == terms["repayment_day"] for row in rows)
    assert all(a.due_date < b.due_date for a, b in itertools.pairwise(rows))
    assert rows[0].due_date > terms["start_date"]


@PROPERTY_SETTINGS
@given(terms=loan_terms.map(lambda t: {**t, "method": EI}))
def test_equal_installment_payment_is_level_until_repaid(terms: dict) -> None:
    rows = build_schedule(**terms)
    payment = rows[0].principal + rows[0].interest
    # Rounding the level payment up can, for a tiny loan or 30 years at a very
    # high rate, repay the loan before the last month; from then on there is
    # nothing left to pay. Every installment that leaves a balance is level.
    for row in rows[:-1]:
        if row.closing_balance > 0:
            assert row.principal + row.interest == payment


@PROPERTY_SETTINGS
@given(
    terms=loan_terms.map(lambda t: {**t, "method": EI}),
    principal=fen(1_000_000, 500_000_000),
    term=st.integers(1, 60),
)
def test_equal_installment_car_loans_are_strictly_level(
    terms: dict, principal: Decimal, term: int
) -> None:
    # For realistic car loans (10,000 yuan or more, up to five years) the
    # rounding residue is far smaller than one payment, so no early payoff.
    rows = build_schedule(**{**terms, "principal": principal, "term_months": term})
    assert len({row.principal + row.interest for row in rows[:-1]}) <= 1
    assert all(row.closing_balance > 0 for row in rows[:-1])


@PROPERTY_SETTINGS
@given(terms=loan_terms)
def test_interest_is_charged_on_the_opening_balance(terms: dict) -> None:
    rate = monthly_rate(terms["annual_rate_percent"])
    for row in build_schedule(**terms):
        assert row.interest == round_fen(row.opening_balance * rate)


@PROPERTY_SETTINGS
@given(terms=loan_terms.map(lambda t: {**t, "method": EP}))
def test_equal_principal_repays_a_level_principal(terms: dict) -> None:
    rows = build_schedule(**terms)
    level = round_fen(terms["principal"] / terms["term_months"])
    # As above, the last installment absorbs the rounding and an over-rounded
    # level amount may finish a tiny loan early.
    for row in rows[:-1]:
        if row.closing_balance > 0:
            assert row.principal == level
