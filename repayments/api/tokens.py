"""API tokens: sign in with mobile number and password, as on the login page.

The password check goes through ``django.contrib.auth.authenticate`` with the
request, so django-axes counts failures and locks (number, address) pairs
exactly as it does for the login page; the lockout is answered here as a 429
problem with ``Retry-After`` instead of the page's HTML.
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib.auth import authenticate
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from repayments.api.errors import LockedOut
from repayments.api.permissions import IsBorrower, borrower_of
from repayments.api.serializers import TokenRequestSerializer, TokenSerializer
from repayments.api.throttling import AuthRateThrottle


class InvalidCredentials(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The mobile number (or username) and password do not match.")
    default_code = "invalid_credentials"


class TokenView(APIView):
    throttle_classes = [AuthRateThrottle]

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        """Exchange mobile number and password for a token (`Authorization: Token <t>`)."""
        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        django_request = request._request
        user = authenticate(
            request=django_request,
            username=body.validated_data["phone"],
            password=body.validated_data["password"],
        )
        if getattr(django_request, "axes_locked_out", False):
            # Answered here in the API's own shape; stop AxesMiddleware replacing it.
            django_request.axes_locked_out = False  # type: ignore[attr-defined]
            cool_off = get_cool_off(django_request)
            raise LockedOut(wait=cool_off.total_seconds() if cool_off else None)
        if user is None:
            raise InvalidCredentials()
        if not getattr(user, "phone", None):
            raise PermissionDenied(IsBorrower.message)
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        """Sign out: the token stops working at once."""
        Token.objects.filter(user=borrower_of(request)).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    # Signing in never looks at the Authorization header (a stale token must not
    # block it); signing out needs a valid one.
    def perform_authentication(self, request: Request) -> None:
        if request.method == "DELETE":
            super().perform_authentication(request)

    def get_permissions(self) -> list[BasePermission]:
        signing_out = getattr(self.request, "method", "") == "DELETE"
        return [IsAuthenticated() if signing_out else AllowAny()]
