"""The OAuth2 endpoints (authorize, token, revoke, introspect): DOT's views, audited.

Refusals and introspection are audited here; state changes where they are made
(the validator, in the request's transaction).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
)
from oauth2_provider.views import (
    AuthorizationView,
    IntrospectTokenView,
    RevokeTokenView,
    TokenView,
)
from oauthlib.common import Request as OAuthRequest  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749 import errors  # type: ignore[import-untyped]

from audit.context import context_for
from audit.models import AuditOutcome
from audit.trail import AuditActor, AuditContext
from sharedrecord.auditing import actor_for
from sharedrecord.launch import session_person_in_context
from sharedrecord.models import User
from sharedrecord.oauth.consent import (
    authorization_chain_usable,
    authorization_of_token,
    client_actor,
    oauth_event_audit,
    token_digest,
)
from sharedrecord.oauth.server import SmartValidator
from sharedrecord.smart import scopes_want_launch

Application = get_application_model()
AccessToken = get_access_token_model()

# ------------------------------------------------------------------ the endpoints


def _claimed_client(request: HttpRequest) -> tuple[str, Any]:
    """The client a request names (Basic, else `client_id`), and its Application if it exists.

    Nothing is authenticated here: this only names who a refusal is about.
    """
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    client_id = ""
    if scheme.lower() == "basic":
        try:
            client_id = unquote_plus(base64.b64decode(value.strip()).decode().split(":", 1)[0])
        except ValueError:  # bad base64 or not UTF-8
            client_id = ""
    client_id = (client_id or request.POST.get("client_id", ""))[:100]
    if not client_id.isprintable():  # PostgreSQL refuses NUL, in a query and in the trail
        return "", None
    return client_id, Application.objects.filter(client_id=client_id).first() if client_id else None


def _refused(request: HttpRequest, error: str) -> None:
    client_id, application = _claimed_client(request)
    actor = client_actor(application) if application is not None else AuditActor.anonymous()
    grant = request.POST.get("grant_type", "")[:60]
    oauth_event_audit(
        event="refused", actor=actor, client_id=client_id, context=context_for(request),
        error=error[:60], grant=grant if grant.isprintable() else "",
    )  # fmt: skip


def _error_of(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.content).get("error", ""))
    except (ValueError, AttributeError):
        return ""


class SmartAuthorizationView(AuthorizationView):  # type: ignore[misc]
    """The consent page: asked every time, given only by its form's POST, audited either way."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # DOT skips the page for approval_prompt=auto when a live token has the
        # same scopes: consent is asked every time instead.
        if "approval_prompt" in request.GET:
            query = request.GET.copy()
            del query["approval_prompt"]
            request.GET = query  # type: ignore[assignment]
        response: HttpResponse = super().get(request, *args, **kwargs)
        return response

    def form_valid(self, form: Any) -> HttpResponse:
        # DOT looks the form's client up with .get(): a client_id edited in the
        # hidden field would be a 500. It is refused like an unknown client.
        client_id = str(form.cleaned_data["client_id"])
        if "\x00" in client_id or not Application.objects.filter(client_id=client_id).exists():
            unknown = FatalClientError(error=errors.InvalidClientIdError())
            return self.error_response(unknown, None)
        response: HttpResponse = super().form_valid(form)
        return response

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> tuple[str, dict[str, str], str, int]:
        if request.method != "POST":
            # Neither approval_prompt=auto nor an application's skip_authorization
            # gives consent: only the member of staff's Allow does.
            raise OAuthToolkitError(
                error=errors.AccessDeniedError(state=credentials.get("state")),
                redirect_uri=credentials.get("redirect_uri"),
            )
        credentials["session_key"] = request.session.session_key or ""
        if allow and scopes_want_launch(scopes.split()):
            # EHR launch context: the person whose record is open in this session.
            person = session_person_in_context(request)
            if not person:
                raise OAuthToolkitError(
                    error=errors.InvalidRequestError(
                        description="Open the person's record first, then start the application.",
                        state=credentials.get("state"),
                    ),
                    redirect_uri=credentials.get("redirect_uri"),
                )
            credentials["launch_patient"] = person
        with transaction.atomic():
            answer: tuple[str, dict[str, str], str, int] = super().create_authorization_response(
                request, scopes, credentials, allow
            )
        return answer

    def error_response(self, error: Any, application: Any, **kwargs: Any) -> HttpResponse:
        request = self.request
        code = str(error.oauthlib_error.error)
        declined = request.method == "POST" and not request.POST.get("allow")
        user = request.user
        actor = actor_for(user) if isinstance(user, User) else AuditActor.anonymous()
        if application is not None:
            client_id = application.client_id
        else:
            client_id = str(request.POST.get("client_id") or request.GET.get("client_id", ""))
            client_id = client_id[:100] if client_id.isprintable() else ""
        with transaction.atomic():
            if declined and code == "access_denied":
                oauth_event_audit(event="consent-refused", actor=actor, client_id=client_id,
                       context=context_for(request))  # fmt: skip
            else:
                oauth_event_audit(event="refused", actor=actor, client_id=client_id,
                                  context=context_for(request), error=code[:60])  # fmt: skip
        response: HttpResponse = super().error_response(error, application, **kwargs)
        return response


class SmartTokenView(TokenView):  # type: ignore[misc]
    """The token endpoint: one transaction a request, every refusal audited."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Not DOT's post(): it sends the device grant to a handler that needs a
        # device_code (a 500 without one). This server has no device flow, so
        # every grant type goes to oauthlib, which refuses what it does not know.
        with transaction.atomic():
            response: HttpResponse = self.authorization_flow_token_response(request)
            if response.status_code != 200:
                _refused(request, _error_of(response))
        return response


class SmartRevokeTokenView(RevokeTokenView):  # type: ignore[misc]
    """RFC 7009 revocation in one transaction; a refused request is audited."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with transaction.atomic():
            response: HttpResponse = super().post(request, *args, **kwargs)
            if response.status_code != 200:
                _refused(request, _error_of(response))
        return response


def _authenticated_client(request: HttpRequest) -> Any:
    """The client, if it authenticated with client_secret_basic (as at the token endpoint)."""
    oauth_request = OAuthRequest(
        request.build_absolute_uri(),
        http_method=request.method or "POST",
        body=request.POST.urlencode(),
        # DOT reads Basic credentials from the WSGI name, as its core passes META on.
        headers={"HTTP_AUTHORIZATION": request.META.get("HTTP_AUTHORIZATION", "")},
    )
    if SmartValidator().authenticate_client(oauth_request):
        return oauth_request.client
    return None


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class SmartIntrospectTokenView(IntrospectTokenView):  # type: ignore[misc]
    """RFC 7662 for the token's own client or a registered resource server.

    A client authenticates with client_secret_basic; an access token in its
    place (DOT's "introspection" scope) is not accepted. Another client's
    token, like an unknown or ended one, is `{"active": false}`. Resource
    servers are the clients named in API_RESOURCE_SERVERS. POST only: a
    token in a query string would be written to logs.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client = _authenticated_client(request)
        if client is None:
            with transaction.atomic():
                _refused(request, "invalid_client")
            refused = JsonResponse({"error": "invalid_client"}, status=401)
            refused["WWW-Authenticate"] = 'Basic realm="oauth"'
            return refused
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        with transaction.atomic():
            return self.introspect(request, client)

    def introspect(self, request: HttpRequest, client: Any) -> JsonResponse:
        value = request.POST.get("token", "")
        if not value:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "Send the token to look at."},
                status=400,
            )
        access = (
            AccessToken.objects.select_related("user", "application")
            .filter(token_checksum=token_digest(value))
            .first()
        )
        permitted = access is not None and (
            access.application_id == client.pk or client.client_id in settings.API_RESOURCE_SERVERS
        )
        context = context_for(request)
        active = permitted and access.is_valid() and self.usable(access, context)
        whose: dict[str, Any] = (
            {"token_client_id": access.application.client_id} if permitted else {}
        )
        oauth_event_audit(
            event="token-introspected", actor=client_actor(client), client_id=client.client_id,
            context=context, outcome=AuditOutcome.SUCCESS if permitted else AuditOutcome.DENIED,
            active=active, **whose,
        )  # fmt: skip
        if not active:
            return JsonResponse({"active": False})
        answer: dict[str, Any] = {
            "active": True,
            "scope": access.scope,
            "exp": int(access.expires.timestamp()),
            "client_id": access.application.client_id,
            "token_type": "Bearer",
        }
        if access.user is not None:
            answer["username"] = access.user.get_username()
        return JsonResponse(answer)

    @staticmethod
    def usable(access: Any, context: AuditContext) -> bool:
        if access.user_id is None:  # a partner system reads as its service account
            account = access.application.user
            return account is not None and bool(account.is_active)
        authorization = authorization_of_token(access)
        return authorization_chain_usable(user=access.user, authorization=authorization,
                                          context=context)  # fmt: skip
