"""Who may call the borrower API: signed-in borrowers, each seeing only their own.

Object-level checks are not enough for lists (DRF does not apply them there), so
every view also builds its queryset from ``request.user``: another borrower's id
is simply not found (404), never "forbidden", so ids reveal nothing.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from repayments.models import User


class IsBorrower(BasePermission):
    """A signed-in, active borrower (a user with a mobile number); staff use the console."""

    message = _("This API is for borrowers. Staff use the support console.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.phone)


def borrower_of(request: Request) -> User:
    """The signed-in borrower (views run behind ``IsBorrower``)."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
