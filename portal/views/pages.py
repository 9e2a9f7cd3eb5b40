"""Borrower-facing pages. Thin: read the clock, call a selector, render."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from portal.forms import SignInForm
from portal.presenters import loan_cards
from portal.views.support.access import is_console_user
from repayments.selectors import loans_for_borrower


def home(request: HttpRequest) -> HttpResponse:
    """Sign-in invitation for visitors; the borrower's loans once signed in."""
    user = request.user
    if not user.is_authenticated:
        return render(request, "portal/welcome.html")
    if is_console_user(user):
        # Staff have no loans; their work is the console.
        return redirect("support:index")
    today = timezone.localdate()
    loans = loans_for_borrower(borrower=user, today=today)
    return render(request, "portal/home.html", {"loans": loan_cards(loans), "today": today})


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        user = self.request.user
        if user.is_authenticated and is_console_user(user):
            return reverse("support:index")
        return super().get_default_redirect_url()
