"""Phone, resident-ID and card numbers: validation and the masked forms we keep.

Full ID and card numbers never reach the database (design rule 10): services
validate them here and store only :func:`mask_id_number` / :func:`mask_card`.
"""

from __future__ import annotations

import re

from repayments.domain.errors import DomainError

MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"


class InvalidIdentity(DomainError):
    """A phone, ID or card number is malformed."""

    code = "invalid_identity"


def normalise_phone(raw: str) -> str:
    """Return an 11-digit mainland mobile number, stripping spaces, dashes and +86.

    :raises InvalidIdentity: when the result is not a mainland mobile number.
    """
    digits = re.sub(r"[\s-]", "", raw or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    if not MAINLAND_MOBILE.match(digits):
        raise InvalidIdentity("enter an 11-digit mainland mobile number starting with 1")
    return digits


def mask_phone(phone: str) -> str:
    """``13800138000`` -> ``138****8000``."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"


def validate_id_number(raw: str) -> str:
    """Return an 18-character resident ID (GB 11643) with a correct check digit.

    :raises InvalidIdentity: on a wrong length, characters or check digit.
    """
    value = (raw or "").strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        raise InvalidIdentity("a resident ID number has 17 digits followed by a digit or X")
    if id_check_char(value[:17]) != value[17]:
        raise InvalidIdentity("the resident ID number's check digit is wrong")
    return value


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def mask_id_number(id_number: str) -> str:
    """``110101199003071234`` -> ``110***********1234`` (first 3, last 4)."""
    return f"{id_number[:3]}{'*' * (len(id_number) - 7)}{id_number[-4:]}"


def luhn_valid(digits: str) -> bool:
    """True when a card number passes the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_card(raw: str) -> str:
    """Return a card number's display form, ``6222 **** **** 1234``.

    :raises InvalidIdentity: unless 13-19 digits that pass the Luhn check.
    """
    digits = re.sub(r"\s", "", raw or "")
    if not re.fullmatch(r"\d{13,19}", digits) or not luhn_valid(digits):
        raise InvalidIdentity("a bank card number has 13 to 19 digits and a valid check digit")
    return f"{digits[:4]} **** **** {digits[-4:]}"
