"""The one template filter that shows money: ``{{ amount|yuan }}`` -> ``¥12,345.60``."""

from __future__ import annotations

from decimal import Decimal

from django import template

from repayments.domain.money import format_yuan

register = template.Library()


@register.filter
def yuan(value: Decimal | None) -> str:
    return format_yuan(value if value is not None else Decimal("0.00"))
