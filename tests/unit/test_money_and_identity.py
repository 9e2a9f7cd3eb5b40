from decimal import Decimal

import pytest

from repayments.domain.identity import (
    InvalidIdentity,
    id_check_char,
    mask_card,
    mask_id_number,
    mask_phone,
    normalise_phone,
    validate_id_number,
)
from repayments.domain.money import InvalidAmount, format_yuan, parse_amount, round_fen


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100", Decimal("100.00")),
        ("0.1", Decimal("0.10")),
        (Decimal("3716.23"), Decimal("3716.23")),
        (5, Decimal("5.00")),
    ],
)
def test_parse_amount_accepts_exact_yuan(raw: object, expected: Decimal) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("1.005", "more than two decimal places"),
        (1.5, "not float"),
        ("abc", "is not an amount"),
        ("-3", "negative"),
        ("0", "greater than zero"),
        ("NaN", "finite"),
        ("1e20", "larger than"),
    ],
)
def test_parse_amount_names_the_problem(raw: object, problem: str) -> None:
    with pytest.raises(InvalidAmount, match=problem):
        parse_amount(raw)


def test_round_fen_is_half_up() -> None:
    assert round_fen(Decimal("0.005")) == Decimal("0.01")
    assert round_fen(Decimal("2.675")) == Decimal("2.68")
    assert round_fen(Decimal("-0.005")) == Decimal("-0.01")
    assert format_yuan(Decimal("12345.6")) == "¥12,345.60"


def test_phone_normalised_and_masked() -> None:
    assert normalise_phone("+86 138-0013-8000") == "13800138000"
    assert mask_phone("13800138000") == "138****8000"
    with pytest.raises(InvalidIdentity):
        normalise_phone("12800138000")


def test_id_number_checksum_and_mask() -> None:
    valid = "11010519491231002X"  # GB 11643 published sample
    assert validate_id_number(valid.lower()) == valid
    assert mask_id_number(valid) == "110***********002X"
    first17 = "44030619950120345"
    assert validate_id_number(first17 + id_check_char(first17))
    with pytest.raises(InvalidIdentity, match="check digit"):
        validate_id_number("110105194912310021")


def test_card_masked_to_first_four_and_last_four() -> None:
    assert mask_card("4111 1111 1111 1111") == "4111 **** **** 1111"
    with pytest.raises(InvalidIdentity):
        mask_card("4111111111111112")
