"""Sign-in by mobile number (borrowers) or username (staff)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from repayments.domain.identity import InvalidIdentity, normalise_phone
from repayments.models import User


class PhoneOrUsernameBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if not username or password is None:
            return None
        try:
            user = User.objects.get(phone=normalise_phone(username))
        except (InvalidIdentity, User.DoesNotExist):
            try:
                user = User.objects.get(username=username)
            except User.DoesNotExist:
                User().set_password(password)  # same cost whether or not the user exists
                return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
