"""The FHIR R4 read API over HTTP: OAuth2 bearer tokens in, searchset Bundles out.

HTTP only (STYLE.md section 6): each view checks the token's scopes, parses
the request's parameters into typed values (params.py, the search grammar),
passes those values to one audited read (search.py, fhir_read.py,
fhir_entries.py, which turn them into queries), and writes the response (bundles.py). Every error is
an OperationOutcome with the status FHIR asks for, naming the parameter at
fault (`expression` "http.<name>") and never repeating its value. Nothing is
written: every other method answers 405.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, ValidationError
from django.http import Http404, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from audit.context import context_for
from audit.outcomes import FHIR_JSON, outcome_http_response
from sharedrecord.access import viewer_may_search
from sharedrecord.exceptions import (
    RETRY_AFTER_SECONDS,
    InvalidParameter,
    PatientNotFound,
    store_unavailable,
)
from sharedrecord.fhir_entries import (
    Cursor,
    api_entries_page,
    api_entry_read,
    cursor_read,
    query_key,
)
from sharedrecord.fhir_read import (
    ApiBasis,
    ApiCaller,
    api_basis_parse,
    api_patient_read,
    api_patient_search,
    patient_resource,
)
from sharedrecord.fhirapi.bundles import (
    bundle,
    json_response,
    link,
    page_response,
    patient_entry,
    prepend,
    too_many_entry,
)
from sharedrecord.fhirapi.capability import capability_statement, smart_configuration
from sharedrecord.fhirapi.params import (
    parse_everything,
    parse_id,
    parse_patient_search,
    parse_public_id,
    parse_type_search,
    unknown_names,
)
from sharedrecord.models import User
from sharedrecord.smart import READABLE_TYPES, SEARCHABLE_TYPES, types_allowed

JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON, "application/json+fhir"})


class FhirJsonRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "json"


class FhirError(Exception):
    """An error the API answers with an OperationOutcome (code from the FHIR issue-type set).

    `parameter` names the HTTP parameter at fault, if one is.
    """

    def __init__(self, status: int, code: str, message: str, parameter: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.parameter = parameter


def _error(status: int, code: str, message: str, parameter: str = "") -> HttpResponse:
    response = outcome_http_response(status, code=code, text=message, parameter=parameter)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="fhir", error="invalid_token"'
    return response


class FhirBearerAuthentication(OAuth2Authentication):  # type: ignore[misc]
    """An OAuth2 access token; a client-credentials token reads as its application's user."""

    www_authenticate_realm = "fhir"

    def authenticate(self, request: Any) -> tuple[User, Any] | None:
        found = super().authenticate(request)
        if found is None:
            return None
        user, token = found
        if user is None:  # client credentials: the application's service account
            user = token.application.user
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("This application has no active account.")
        return user, token


class FhirApi(APIView):
    """Shared by every FHIR route: bearer tokens, scopes, strictness, OperationOutcomes."""

    authentication_classes: tuple[type[BaseAuthentication], ...] = (FhirBearerAuthentication,)
    permission_classes: tuple[type[BasePermission], ...] = (IsAuthenticated,)
    parser_classes = (FormParser,)
    renderer_classes = (FhirJsonRenderer, JSONRenderer)
    # Parameters each view understands; `_format` is understood everywhere.
    params: ClassVar[frozenset[str]] = frozenset()

    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, FhirError):
            return _error(exc.status, exc.code, exc.message, exc.parameter)
        if isinstance(exc, InvalidParameter):
            return _error(400, exc.issue, exc.message, exc.parameter)
        if isinstance(exc, RequestDataTooBig):
            return _error(413, "too-costly", "The request body is too large.")
        if isinstance(exc, SuspiciousOperation):
            # Too many parameters, a malformed body or host: Django refuses to read it.
            return _error(400, "invalid", "The request could not be read.")
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            return _error(401, "login", "Send a valid OAuth2 bearer token.")
        if isinstance(exc, PatientNotFound | Http404):
            return _error(404, "not-found", "No resource with this id is available to you.")
        if isinstance(exc, ValidationError):
            return _error(400, "invalid", " ".join(exc.messages))
        if isinstance(exc, exceptions.MethodNotAllowed):
            return _error(405, "not-supported", "This API is read-only.")
        if isinstance(exc, exceptions.NotAcceptable):
            return _error(406, "not-supported", "Only FHIR JSON is served.")
        if isinstance(exc, exceptions.UnsupportedMediaType):
            return _error(
                415, "not-supported", "Send application/x-www-form-urlencoded to _search."
            )
        if isinstance(exc, exceptions.PermissionDenied):
            return _error(403, "forbidden", str(exc.detail))
        if isinstance(exc, exceptions.APIException):
            return _error(exc.status_code, "processing", str(exc.detail))
        if store_unavailable(exc):
            response = _error(503, "transient", "The record store is not answering; try again.")
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        raise exc

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A write is refused before anything reads its body (the token check would).
        if request.method is None or not hasattr(self, request.method.lower()):
            raise exceptions.MethodNotAllowed(request.method or "")
        super().initial(request, *args, **kwargs)
        fmt = request.query_params.get("_format", "")
        if fmt and fmt not in JSON_FORMATS:
            raise exceptions.NotAcceptable()

    # ---- what the request says

    def search_params(self, request: Request) -> list[tuple[str, str]]:
        """The search's parameters (query string, or the form body of a POST _search).

        Unknown ones are ignored, unless the client sent `Prefer: handling=strict`.
        """
        source = cast(QueryDict, request.data if request.method == "POST" else request.query_params)
        pairs = [(k, v) for k in source for v in source.getlist(k)]
        unknown = unknown_names(pairs, self.params | {"_format"})
        if unknown and "handling=strict" in request.headers.get("Prefer", "").replace(" ", ""):
            raise FhirError(400, "not-supported", f"Unknown parameters: {', '.join(unknown)}.")
        return [(k, v) for k, v in pairs if k in self.params]

    def caller(self, request: Request, needs: frozenset[str]) -> ApiCaller:
        """The caller, if its scopes allow at least one of the types it asked for."""
        user = request.user
        token: Any = request.auth
        assert isinstance(user, User)
        system = token.user_id is None
        caller = ApiCaller(
            user=user,
            client_id=token.application.client_id,
            client_name=token.application.name,
            system=system,
            types=types_allowed(set(token.scope.split()), system=system),
        )
        if not caller.types & needs:
            raise FhirError(403, "forbidden", "The token's scopes do not allow this read.")
        if not viewer_may_search(user):
            raise FhirError(
                403,
                "forbidden",
                "This account cannot read records: it needs a clinical or care role in an "
                "organisation whose data sharing agreement is active.",
            )
        return caller

    def basis(self, request: Request) -> ApiBasis:
        return api_basis_parse(
            purpose=request.headers.get("X-Purpose-Of-Use", ""),
            reason_code=request.headers.get("X-Break-Glass-Reason", ""),
            reason_text=request.headers.get("X-Break-Glass-Justification", ""),
        )

    def base(self, request: Request) -> str:
        return settings.FHIR_BASE_URL or request.build_absolute_uri("/fhir/R4").rstrip("/")


def _page_size() -> int:
    return int(settings.FHIR_PAGE_SIZE)


def _page_max() -> int:
    return int(settings.FHIR_PAGE_MAX)


def _cursor(token: str, query: str) -> Cursor | None:
    """The cursor a next link carries; a 400 naming _cursor if it is not one of ours."""
    if not token:
        return None
    try:
        return cursor_read(token, query=query)
    except ValidationError as exc:
        raise FhirError(400, "value", " ".join(exc.messages), "_cursor") from exc


# ------------------------------------------------------------------ the routes


class CapabilityStatementApi(FhirApi):
    """What this server supports, truthfully. Public, as FHIR requires."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        return json_response(capability_statement(self.base(request)))


class SmartConfigurationApi(FhirApi):
    """SMART App Launch discovery: where to get a token and which scopes exist."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        root = request.build_absolute_uri("/").rstrip("/")
        return HttpResponse(json.dumps(smart_configuration(root)), content_type="application/json")


class PatientSearchApi(FhirApi):
    """Find a person: by NHS number (identifier), or by family name and birth date."""

    params = frozenset({"identifier", "family", "birthdate", "gender", "address-postalcode"})

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        caller = self.caller(request, frozenset({"Patient"}))
        basis = self.basis(request)
        params = self.search_params(request)
        search = parse_patient_search(params, tz=timezone.get_current_timezone())
        if search.other_system:
            # Only NHS numbers identify people here: nobody has another identifier.
            return bundle(total=0, links=[("self", self._self(request, params))], entries=[])
        found = api_patient_search(
            caller=caller,
            basis=basis,
            nhs_number=search.nhs_number,
            family=search.family,
            birth_date=search.birth_date,
            gender=search.gender,
            postcode=search.postcode,
            context=context_for(request),
        )
        base = self.base(request)
        entries = [patient_entry(base, p) for p in found.patients]
        if found.too_many:
            entries.append(too_many_entry())
        return bundle(
            total=len(found.patients), links=[("self", self._self(request, params))],
            entries=entries,
        )  # fmt: skip

    def _self(self, request: Request, params: list[tuple[str, str]]) -> str:
        # The NHS number is not echoed back in links (links end up in logs).
        kept = [(k, v) for k, v in params if k not in ("identifier", "family", "birthdate")]
        return link(self.base(request), "Patient", kept)


class PatientPostSearchApi(PatientSearchApi):
    """POST Patient/_search: the same search with its parameters in a form body."""

    @extend_schema(exclude=True)
    def post(self, request: Request) -> HttpResponseBase:
        return self.get(request)


class PatientReadApi(FhirApi):
    @extend_schema(exclude=True)
    def get(self, request: Request, patient_id: str) -> HttpResponseBase:
        caller = self.caller(request, frozenset({"Patient"}))
        basis = self.basis(request)
        self.search_params(request)
        patient = api_patient_read(
            caller=caller, basis=basis, patient_id=_public_id_or_404(patient_id),
            context=context_for(request),
        )  # fmt: skip
        return json_response(patient_resource(patient))


def _public_id_or_404(value: str) -> str:
    found = parse_public_id(value)
    if found is None:
        raise Http404
    return found


class PatientEverythingApi(FhirApi):
    """Patient/<id>/$everything: the whole record this caller may see, paged and stable."""

    params = frozenset({"_since", "_type", "_count", "_cursor", "_total"})

    @extend_schema(exclude=True)
    def get(self, request: Request, patient_id: str) -> HttpResponseBase:
        caller = self.caller(request, READABLE_TYPES)
        basis = self.basis(request)
        params = self.search_params(request)
        search = parse_everything(
            params, page_size=_page_size(), page_max=_page_max(), readable=READABLE_TYPES
        )
        types = caller.types if search.types is None else caller.types & search.types
        query = query_key(params)
        cursor = _cursor(search.cursor, query)
        identifier = _public_id_or_404(patient_id)
        base = self.base(request)
        page = api_entries_page(
            caller=caller, basis=basis, patient_id=identifier, types=types, since=search.since,
            count=search.count, cursor=cursor, query=query, interaction="everything",
            base=base, counted=search.counted, context=context_for(request),
        )  # fmt: skip
        response = page_response(base, f"Patient/{identifier}/$everything", params, page)
        if cursor is None and "Patient" in types:
            # The person comes first, on the first page (FHIR: the Patient is in $everything).
            person = patient_entry(base, page.patient)
            response.streaming_content = prepend(
                cast(Iterator[bytes], response.streaming_content), person
            )
        return response


class TypeSearchApi(FhirApi):
    """A search of one resource type in one person's record."""

    params = frozenset(
        {"patient", "date", "category", "code", "status", "_lastUpdated", "_count", "_cursor",
         "_total", "_revinclude"}
    )  # fmt: skip

    @extend_schema(exclude=True)
    def get(self, request: Request, resource_type: str) -> HttpResponseBase:
        if resource_type not in SEARCHABLE_TYPES:
            raise FhirError(404, "not-supported", "This server does not serve that resource type.")
        caller = self.caller(request, frozenset({resource_type}))
        basis = self.basis(request)
        params = self.search_params(request)
        search = parse_type_search(
            params, page_size=_page_size(), page_max=_page_max(),
            tz=timezone.get_current_timezone(),
        )  # fmt: skip
        query = query_key(params)
        cursor = _cursor(search.cursor, query)
        try:
            page = api_entries_page(
                caller=caller, basis=basis, patient_id=_public_id_or_404(search.patient),
                types=frozenset({resource_type}), search=search, count=search.count,
                cursor=cursor, query=query, interaction="search-type",
                base=self.base(request), provenance=search.revinclude_provenance,
                counted=search.counted, context=context_for(request),
            )  # fmt: skip
        except (PatientNotFound, Http404):
            # A person the caller may not see answers like nobody: an empty search.
            links = [("self", link(self.base(request), resource_type, params))]
            return bundle(total=0, links=links, entries=[])
        return page_response(self.base(request), resource_type, params, page)


class EntryReadApi(FhirApi):
    @extend_schema(exclude=True)
    def get(self, request: Request, resource_type: str, entry_id: str) -> HttpResponseBase:
        if resource_type not in READABLE_TYPES:
            raise FhirError(404, "not-supported", "This server does not serve that resource type.")
        caller = self.caller(request, frozenset({resource_type}))
        basis = self.basis(request)
        self.search_params(request)
        if parse_id(entry_id) is None:
            # Not a FHIR id, so it names nothing (and is never written to the trail).
            raise Http404
        text = api_entry_read(
            caller=caller, basis=basis, resource_type=resource_type, entry_id=entry_id,
            context=context_for(request),
        )  # fmt: skip
        return HttpResponse(text, content_type=FHIR_JSON)
