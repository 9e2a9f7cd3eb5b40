"""Money: yuan amounts as ``Decimal`` with exactly two places (fen).

Every amount that enters the domain goes through :func:`parse_amount` (strict:
no floats, no third decimal place) and every computed amount through
:func:`round_fen` (ROUND_HALF_UP, the rounding Chinese lenders publish).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from repayments.domain.errors import DomainError

FEN = Decimal("0.01")
ZERO = Decimal("0.00")
# Large enough for any car loan, small enough for DecimalField(max_digits=14).
MAX_AMOUNT = Decimal("999999999999.99")


class InvalidAmount(DomainError):
    """An amount is not a finite, non-negative yuan value with at most two places."""

    code = "invalid_amount"


def parse_amount(value: object, *, allow_zero: bool = False) -> Decimal:
    """Return ``value`` as a two-place Decimal, refusing anything inexact.

    :raises InvalidAmount: for floats, non-numbers, NaN/infinity, negatives,
        zero (unless ``allow_zero``), more than two decimal places, or values
        above :data:`MAX_AMOUNT`.
    """
    if isinstance(value, (bool, float)):
        raise InvalidAmount(f"amount must be given as text or Decimal, not {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidAmount(f"'{value}' is not an amount") from None
    if not amount.is_finite():
        raise InvalidAmount(f"'{value}' is not a finite amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and amount != amount.quantize(FEN):
        raise InvalidAmount(f"'{value}' has more than two decimal places (fen)")
    if amount < 0:
        raise InvalidAmount(f"'{value}' is negative")
    if amount == 0 and not allow_zero:
        raise InvalidAmount("amount must be greater than zero")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"'{value}' is larger than {MAX_AMOUNT}")
    return amount.quantize(FEN)


def round_fen(value: Decimal) -> Decimal:
    """Round a computed value to fen, half up."""
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def format_yuan(value: Decimal) -> str:
    """Format an amount for people: ``¥12,345.60``."""
    return f"¥{round_fen(value):,.2f}"
