"""What the admin may show of sensitive values: masked forms, never secrets.

Raw callback bodies stay readable for debugging a changed format, but any field
that carries a key, a password, a card token or a full card number is replaced
before it reaches the page (design rule 10).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from django.utils.translation import gettext as _

from repayments.domain.identity import luhn_valid, mask_phone

REDACTED = "***"
# Field names whose values are secrets or full personal numbers, in any channel's spelling.
SENSITIVE_KEY = re.compile(
    r"(secret|passw|pwd|private|api_?key|app_?key|^key$|_key$|token|acc_?no|card_?no|"
    r"cvv|cvn|id_?no|cert_?no|certif_?id|id_?card|customer_?info|phone_?no|mobile|"
    r"authorization|cookie)",
    re.IGNORECASE,
)
# A standalone run of 15-19 digits that passes Luhn is treated as a card number.
CARD_LIKE = re.compile(r"(?<!\d)\d{15,19}(?!\d)")


def card_tail(masked_card: str) -> str:
    """``6222 **** **** 1234`` -> ``尾号1234`` (in the active language)."""
    digits = re.sub(r"\D", "", masked_card or "")
    if len(digits) < 4:
        return ""
    return _("ending %(tail)s") % {"tail": digits[-4:]}


def masked_phone(phone: str | None) -> str:
    return mask_phone(phone) if phone else ""


def _mask_card_numbers(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = match.group(0)
        return f"{digits[:4]}****{digits[-4:]}" if luhn_valid(digits) else digits

    return CARD_LIKE.sub(replace, text)


def redact_mapping(value: Any) -> Any:
    """A copy of a JSON-like value with sensitive keys blanked and card numbers masked."""
    if isinstance(value, dict):
        return {
            key: REDACTED if SENSITIVE_KEY.search(str(key)) else redact_mapping(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_mapping(item) for item in value]
    if isinstance(value, str):
        return _mask_card_numbers(value)
    return value


def redact_body(body: bytes) -> str:
    """A raw callback body as text, safe to show: JSON and form bodies field by field."""
    text = bytes(body).decode("utf-8", errors="replace")
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return _mask_card_numbers(text)
        return json.dumps(redact_mapping(parsed), ensure_ascii=False, indent=2)
    if "=" in stripped and "\n" not in stripped:
        pairs = parse_qsl(stripped, keep_blank_values=True)
        if pairs:
            return "\n".join(
                f"{key}={REDACTED if SENSITIVE_KEY.search(key) else _mask_card_numbers(value)}"
                for key, value in pairs
            )
    return _mask_card_numbers(text)
