"""Who may reach the console: staff with the console permission; borrowers get 404.

Signed-out visitors are sent to sign in. Anyone signed in without the console
permission (every borrower) gets 404, so the console does not reveal itself.
Staff who may use the console but not a particular action (an agent approving
a refund) get 403: they know the page exists, and the answer says why not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase

from repayments.models import User

CONSOLE = "repayments.use_support_console"
ACT = "repayments.act_in_support_console"
APPROVE_REFUND = "repayments.approve_refundrequest"
CORRECT_REVIEW = "repayments.correct_attempt_review"

View = Callable[..., HttpResponseBase]


def support_view(permission: str = CONSOLE) -> Callable[[View], View]:
    """Guard a console view: sign-in, then the console, then ``permission``."""

    def decorator(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not is_console_user(user):
                raise Http404()
            if not user.has_perm(permission):
                raise PermissionDenied()
            return view(request, *args, **kwargs)

        return guarded

    return decorator


def is_console_user(user: User) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(CONSOLE))


def staff_user(request: HttpRequest) -> User:
    """The signed-in staff member (the guard has already checked)."""
    user = request.user
    assert isinstance(user, User)
    return user
