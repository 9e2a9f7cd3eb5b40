"""The borrower's in-app inbox: every notice that went out, with how each channel did."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from notifications.services import notices_in_inbox
from portal.presenters import notice_items
from portal.views.payflow import user_of

PAGE_SIZE = 20


@login_required
@require_GET
def notices(request: HttpRequest) -> HttpResponse:
    inbox = notices_in_inbox(user_id=user_of(request).pk)
    page = Paginator(inbox, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request, "portal/notices.html", {"page": page, "items": notice_items(page.object_list)}
    )
