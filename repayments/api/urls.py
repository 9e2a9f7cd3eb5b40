"""API routes, mounted at /api/ by portal.urls: /api/v1/..., /api/schema/, /api/docs/."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from repayments.api import views
from repayments.api.tokens import TokenView

router = SimpleRouter()
router.register("loans", views.LoanViewSet, basename="loan")
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("disputes", views.DisputeViewSet, basename="dispute")

v1 = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("notices/", views.NoticeListView.as_view(), name="notice-list"),
    *router.urls,
]


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
def not_found(request: Request | HttpRequest, unmatched: str = "") -> Response:
    """Anything else under /api/: a 404 in the API's own error shape."""
    raise NotFound()


app_name = "api"
urlpatterns = [
    path("v1/", include((v1, "v1"))),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^(?P<unmatched>.*)$", not_found, name="not-found"),
]
