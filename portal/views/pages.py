"""Borrower-facing pages. Thin: read the clock, call a selector, render."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from portal.forms import SignInForm
from portal.presenters import loan_cards
from repayments.selectors import loans_for_borrower


def home(request: HttpRequest) -> HttpResponse:
    """Sign-in invitation for visitors; the borrower's loans once signed in."""
    user = request.user
    if not user.is_authenticated:
        return render(request, "portal/welcome.html")
    today = timezone.localdate()
    loans = loans_for_borrower(borrower=user, today=today)
    return render(request, "portal/home.html", {"loans": loan_cards(loans), "today": today})


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True
