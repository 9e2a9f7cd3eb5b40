"""The product's URLs plus the benchmark's baseline: a Django view that runs one query.

Served by the same gunicorn, through the same middleware, as the record page it is
compared with (``bench/record_page.py``). Never part of the product's URLconf.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns
from repayments.models import Payment


def one_query(request: HttpRequest) -> HttpResponse:
    """One indexed SELECT of one payment row, answered as a small JSON document."""
    try:
        payment_id = int(request.GET.get("id", "0"))
    except ValueError:
        payment_id = 0
    row = Payment.objects.filter(pk=payment_id).values("public_id", "amount", "status").first()
    if row is None:
        return JsonResponse({"found": False}, status=404)
    return JsonResponse(
        {"id": str(row["public_id"]), "amount": str(row["amount"]), "status": row["status"]}
    )


urlpatterns = [path("bench/one-query/", one_query, name="bench-one-query"), *portal_urlpatterns]
