"""Web forms."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _


class SignInForm(AuthenticationForm):
    """Borrowers sign in with their mobile number, staff with a username."""

    username = forms.CharField(
        label=_("Mobile number or username"),
        max_length=150,
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "inputmode": "text", "autofocus": True}
        ),
    )
    error_messages = {
        "invalid_login": _("The mobile number (or username) and password do not match."),
        "inactive": _("This account is disabled. Please call customer service."),
    }
