"""Partner systems authenticate with `Authorization: Bearer <token>`."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ingestion.models import FeedCredential
from ingestion.services import feed_credential_authenticate


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
