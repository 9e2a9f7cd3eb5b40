"""Forgot password: the phone number, then the SMS code and a new password, then sign in.

Every answer reads the same for a registered number and an unknown one (no account
enumeration); the rules (code, tries, throttling, audit) live in
``repayments.services.password_reset``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from axes.utils import reset as axes_reset
from django import forms
from django.contrib import messages
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods

from repayments.domain.identity import InvalidIdentity, mask_phone, normalise_phone
from repayments.services.password_reset import (
    CODE_DIGITS,
    ResetCodeInvalid,
    ResetCodeLocked,
    ResetThrottled,
    password_reset_confirm,
    password_reset_request,
)
from repayments.tasks import send_password_reset_code

SESSION_PHONE = "password-reset-phone"


logger = logging.getLogger(__name__)


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label=gettext_lazy("Mobile number"),
        max_length=20,
        widget=forms.TextInput(
            attrs={"autocomplete": "tel", "inputmode": "tel", "autofocus": True}
        ),
        error_messages={"required": gettext_lazy("Enter your mobile number.")},
    )

    def clean_phone(self) -> str:
        try:
            return normalise_phone(self.cleaned_data["phone"])
        except InvalidIdentity:
            raise forms.ValidationError(
                _("Enter an 11-digit mainland mobile number."), code="invalid_phone"
            ) from None


class ResetForm(forms.Form):
    code = forms.RegexField(
        label=gettext_lazy("Code from the SMS"),
        regex=rf"^\s*\d{{{CODE_DIGITS}}}\s*$",
        max_length=12,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
        error_messages={
            "required": gettext_lazy("Enter the 6-digit code from the SMS."),
            "invalid": gettext_lazy("Enter the 6-digit code from the SMS."),
        },
    )
    new_password1 = forms.CharField(
        label=gettext_lazy("New password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        error_messages={"required": gettext_lazy("Choose a new password.")},
    )
    new_password2 = forms.CharField(
        label=gettext_lazy("New password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        error_messages={"required": gettext_lazy("Type the new password again.")},
    )

    def clean_new_password1(self) -> str:
        # The checks that need no account run here, so a weak password is refused at
        # once; the service checks again against the account (similarity to the name).
        password: str = self.cleaned_data["new_password1"]
        validate_password(password)
        return password

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("new_password1"), data.get("new_password2")
        if first and second and first != second:
            self.add_error("new_password2", _("The two passwords do not match."))
        return data


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Step 1: the mobile number. A code is texted if (and only if) it is registered."""
    form = PhoneForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        phone = form.cleaned_data["phone"]
        try:
            sent = password_reset_request(phone=phone, ip=_client_ip(request), now=timezone.now())
        except ResetThrottled as exc:
            form.add_error(None, _throttle_words(exc))
            status = 429
        else:
            # Queued for every number alike: the SMS never makes a known one answer slower.
            _queue_code(sent.code_id, translation.get_language() or "zh-hans")
            request.session[SESSION_PHONE] = phone
            messages.info(
                request,
                _(
                    "If %(phone)s is registered with us, we have sent it a 6-digit code. "
                    "It is valid for 10 minutes."
                )
                % {"phone": sent.masked_phone},
            )
            return redirect("password-reset-verify")
    elif form.is_bound:
        status = 400
    return render(request, "registration/password_reset_phone.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
def password_reset_verify(request: HttpRequest) -> HttpResponse:
    """Step 2: the code and the new password (twice, checked by the password validators)."""
    phone = request.session.get(SESSION_PHONE)
    if not phone:
        return redirect("password-reset")
    form = ResetForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                password_reset_confirm(
                    phone=phone,
                    code=form.cleaned_data["code"],
                    new_password=form.cleaned_data["new_password1"],
                    now=timezone.now(),
                )
            except ResetCodeLocked:
                form.add_error(
                    "code",
                    _("Too many wrong codes. Ask for a new code to try again."),
                )
                status = 429
            except ResetCodeInvalid as exc:
                form.add_error("code", _code_words(exc))
            except ValidationError as exc:
                form.add_error("new_password1", exc)
            else:
                del request.session[SESSION_PHONE]
                axes_reset(username=phone)  # a lock-out from before no longer applies
                messages.success(
                    request, _("Your password was changed. Sign in with the new password.")
                )
                return redirect("login")
    context = {"form": form, "masked_phone": mask_phone(phone)}
    return render(request, "registration/password_reset_verify.html", context, status=status)


def _client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR as set by the server (a proxy in front must set it, e.g. gunicorn's
    # forwarded-allow-ips); a client-supplied X-Forwarded-For is never trusted here.
    return request.META.get("REMOTE_ADDR") or None


def _throttle_words(exc: ResetThrottled) -> str:
    minutes = max(math.ceil(exc.retry_after.total_seconds() / 60), 1)
    if exc.by_ip:
        return ngettext(
            "Too many codes were asked for from this network. Please try again in %(n)s minute.",
            "Too many codes were asked for from this network. Please try again in %(n)s minutes.",
            minutes,
        ) % {"n": minutes}
    seconds = max(math.ceil(exc.retry_after.total_seconds()), 1)
    if seconds <= 60:
        return ngettext(
            "A code was sent a moment ago. You can ask for another in %(n)s second.",
            "A code was sent a moment ago. You can ask for another in %(n)s seconds.",
            seconds,
        ) % {"n": seconds}
    return ngettext(
        "Too many codes were asked for this number. Please try again in %(n)s minute.",
        "Too many codes were asked for this number. Please try again in %(n)s minutes.",
        minutes,
    ) % {"n": minutes}


def _code_words(exc: ResetCodeInvalid) -> str:
    if exc.tries_left <= 0:
        return _("This code is wrong or has expired. Ask for a new code.")
    return ngettext(
        "This code is wrong or has expired. You can try %(n)s more time.",
        "This code is wrong or has expired. You can try %(n)s more times.",
        exc.tries_left,
    ) % {"n": exc.tries_left}


def _queue_code(code_id: int, language: str) -> None:
    """Queue the SMS; if the broker cannot take it now, the sweeper sends it shortly,
    and the page reads the same either way."""
    try:
        send_password_reset_code.delay(code_id=code_id, language=language)
    except Exception:
        logger.exception("password reset code %s not queued; the sweeper will send it", code_id)
