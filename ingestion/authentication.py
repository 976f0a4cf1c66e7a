"""Partner systems authenticate with `Authorization: Bearer <token>`."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ingestion.credentials import feed_credential_authenticate
from ingestion.models import FeedCredential


@dataclass(frozen=True)
class FeedPrincipal:
    """The partner system behind a request: never a member of staff."""

    credential: FeedCredential
    is_authenticated: bool = True
    is_active: bool = True


class FeedTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[FeedPrincipal, FeedCredential] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        credential = feed_credential_authenticate(token=token.strip())
        if credential is None:
            raise AuthenticationFailed("The token is unknown, wrong or revoked.")
        return FeedPrincipal(credential), credential

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="feeds"'


class IsFeedSystem(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, FeedPrincipal)


class FeedTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describes feed tokens in the OpenAPI document."""

    target_class = "ingestion.authentication.FeedTokenAuthentication"
    name = "feedToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A partner system's feed token (manage.py feed_credential_issue).",
        }
