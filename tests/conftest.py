"""Shared fixtures: a fixed clock, and loans built through the real services."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import override_settings

from repayments.domain.identity import id_check_char
from repayments.models import Loan, LoanProduct, User
from repayments.services.loans import loan_create, product_create
from repayments.services.users import borrower_register

SHANGHAI = ZoneInfo("Asia/Shanghai")
_serial = itertools.count(1)


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """An aware Shanghai datetime: how every test reads the clock."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> Iterator[None]:
    """Hash test passwords cheaply: PBKDF2's million rounds would dominate the suite.

    PBKDF2 stays listed so a hash made the production way still verifies."""
    with override_settings(
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.MD5PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        ]
    ):
        yield


@pytest.fixture
def now() -> datetime:
    return at(date(2026, 1, 5))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (run by .ci/run)")
    if connection.vendor != "postgresql":
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip_pg)


@pytest.fixture
def make_product(now: datetime) -> Callable[..., LoanProduct]:
    def build(**overrides: Any) -> LoanProduct:
        fields: dict[str, Any] = {
            "code": f"test-{next(_serial)}",
            "name": "Test car loan",
            "amortization_method": "equal_installment",
            "annual_rate_percent": Decimal("6.0000"),
            "term_months": 12,
            "monthly_fee": Decimal("0.00"),
            "early_settlement_fee_percent": Decimal("2.00"),
            "grace_days": 3,
            "penalty_daily_rate_percent": Decimal("0.0500"),
        }
        fields.update(overrides)
        return product_create(now=now, **fields)

    return build


@pytest.fixture
def make_borrower(now: datetime) -> Callable[..., User]:
    def build(phone: str | None = None) -> User:
        serial = next(_serial)
        first17 = f"1101051990010{serial:04d}"
        return borrower_register(
            phone=phone or f"139{serial:08d}",
            password="demo12345-Test",
            full_name=f"Borrower {serial}",
            id_number=first17 + id_check_char(first17),
            now=now,
        )

    return build


@pytest.fixture
def make_loan(
    make_product: Callable[..., LoanProduct], make_borrower: Callable[..., User], now: datetime
) -> Callable[..., Loan]:
    def build(
        *,
        principal: str = "100000.00",
        start_date: date = date(2026, 1, 5),
        borrower: User | None = None,
        product: LoanProduct | None = None,
        **product_fields: Any,
    ) -> Loan:
        return loan_create(
            borrower=borrower or make_borrower(),
            product=product or make_product(**product_fields),
            principal=principal,
            start_date=start_date,
            repayment_day=start_date.day if start_date.day <= 28 else 28,
            contract_number=f"T-{next(_serial):06d}",
            vehicle="Test vehicle",
            now=now,
        )

    return build
