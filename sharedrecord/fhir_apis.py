"""The FHIR R4 read API over HTTP: OAuth2 bearer tokens in, searchset Bundles out.

HTTP only (STYLE.md section 6): each view checks the token's scopes, parses
the request's parameters into typed values (fhirparams.py, the search
grammar), builds its query from those values alone, calls one audited read in
fhir_read.py, and writes the Bundle. Every error is an OperationOutcome with
the status FHIR asks for, naming the parameter at fault (`expression`
"http.<name>") and never repeating its value. Nothing is written: every other
method answers 405.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, ValidationError
from django.db.models import Q
from django.http import Http404, HttpResponse, QueryDict, StreamingHttpResponse
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

from sharedrecord.access import ODS_SYSTEM, viewer_may_search
from sharedrecord.auditing import context_for
from sharedrecord.exceptions import InvalidParameter, PatientNotFound
from sharedrecord.fhir_read import (
    ApiBasis,
    ApiCaller,
    Cursor,
    Page,
    Row,
    api_basis_parse,
    api_entries_page,
    api_entry_read,
    api_patient_read,
    api_patient_search,
    cursor_read,
    patient_resource,
    query_key,
)
from sharedrecord.fhirparams import (
    DateParam,
    Token,
    parse_everything,
    parse_id,
    parse_patient_search,
    parse_type_search,
    unknown_names,
)
from sharedrecord.models import User
from sharedrecord.smart import READABLE_TYPES, SEARCHABLE_TYPES, types_allowed

FHIR_JSON = "application/fhir+json"
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


def outcome(severity: str, code: str, message: str, parameter: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if parameter:
        # FHIR names an HTTP parameter in an issue's expression as "http." + its name.
        issue["expression"] = [f"http.{parameter}"]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type=FHIR_JSON)


def _error(status: int, code: str, message: str, parameter: str = "") -> HttpResponse:
    response = _json_response(outcome("error", code, message, parameter), status)
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


def _instant(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


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


# ------------------------------------------------------------------ queries from typed values


def _date_filter(field: str, values: tuple[DateParam, ...]) -> Q:
    """Each value narrows the search (repeat the parameter for a range: ge...&le...)."""
    where = Q()
    for value in values:
        start, end = value.start, value.end
        where &= {
            "eq": Q(**{f"{field}__gte": start, f"{field}__lt": end}),
            "ne": ~Q(**{f"{field}__gte": start, f"{field}__lt": end}),
            "gt": Q(**{f"{field}__gte": end}),
            "sa": Q(**{f"{field}__gte": end}),
            "ge": Q(**{f"{field}__gte": start}),
            "lt": Q(**{f"{field}__lt": start}),
            "eb": Q(**{f"{field}__lt": start}),
            "le": Q(**{f"{field}__lt": end}),
        }[value.prefix]
    return where


T = TypeVar("T")


def _any_of(values: tuple[tuple[T, ...], ...], one: Callable[[T], Q]) -> Q:
    """Repeated parameters AND together; the values inside one OR together."""
    where = Q()
    for alternatives in values:
        either = Q()
        for value in alternatives:
            either |= one(value)
        where &= either
    return where


def _code(token: Token) -> Q:
    where = Q(code_system=token.system) if token.system else Q()
    return where & Q(code=token.code) if token.code else where


def _category(token: Token) -> Q:
    coding = {"system": token.system} if token.system else {}
    if token.code:
        coding["code"] = token.code
    # CodeableConcept categories (most types) and AllergyIntolerance's plain codes.
    where = Q(resource__category__contains=[{"coding": [coding]}])
    if token.code:
        where |= Q(resource__category__contains=[token.code])
    return where


# ------------------------------------------------------------------ Bundles


def _entry_json(base: str, row: Row) -> str:
    return (
        f'{{"fullUrl":"{base}/{row.resource_type}/{row.public_id}",'
        f'"resource":{row.text},"search":{{"mode":"match"}}}}'
    )


def _provenance(base: str, row: Row) -> str:
    who = row.source_name + (f" ({row.source_system})" if row.source_system else "")
    resource = {
        "resourceType": "Provenance",
        "id": f"{row.public_id}-source",
        "target": [{"reference": f"{row.resource_type}/{row.public_id}"}],
        "recorded": _instant(row.updated_at),
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": {
                    "identifier": {"system": ODS_SYSTEM, "value": row.source_ods},
                    "display": who,
                },
            }
        ],
    }
    return json.dumps(
        {
            "fullUrl": f"{base}/Provenance/{row.public_id}-source",
            "resource": resource,
            "search": {"mode": "include"},
        }
    )


def _link(base: str, path: str, params: list[tuple[str, str]]) -> str:
    return f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")


def _bundle(
    *, total: int, links: list[tuple[str, str]], entries: list[str]
) -> StreamingHttpResponse:
    """A searchset Bundle streamed entry by entry; the entries are already JSON text."""
    head = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _instant(timezone.now())},
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }

    def chunks() -> Iterator[str]:
        text = json.dumps(head)
        if not entries:
            yield text
            return
        yield text[:-1] + ',"entry":['
        for i, entry in enumerate(entries):
            yield ("," if i else "") + entry
        yield "]}"

    return StreamingHttpResponse(chunks(), content_type=FHIR_JSON)


def _withheld_entry() -> str:
    return json.dumps(
        {
            "resource": outcome(
                "warning",
                "suppressed",
                "Some items were withheld under the sharing agreement's sensitivity rules.",
            ),
            "search": {"mode": "outcome"},
        }
    )


def _page_response(
    base: str, path: str, params: list[tuple[str, str]], page: Page,
    revinclude: bool = False,
) -> StreamingHttpResponse:  # fmt: skip
    entries = [_entry_json(base, row) for row in page.rows]
    if revinclude:
        entries += [_provenance(base, row) for row in page.rows]
    if page.withheld:
        entries.append(_withheld_entry())
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = [("self", _link(base, path, params))]
    if page.next_cursor is not None:
        links.append(("next", _link(base, path, [*kept, ("_cursor", page.next_cursor.token())])))
    return _bundle(total=page.total, links=links, entries=entries)


# ------------------------------------------------------------------ the routes


class CapabilityStatementApi(FhirApi):
    """What this server supports, truthfully. Public, as FHIR requires."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        return _json_response(capability_statement(self.base(request)))


class SmartConfigurationApi(FhirApi):
    """SMART App Launch discovery: where to get a token and which scopes exist."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        root = request.build_absolute_uri("/").rstrip("/")
        return HttpResponse(
            json.dumps(
                {
                    "authorization_endpoint": f"{root}/o/authorize/",
                    "token_endpoint": f"{root}/o/token/",
                    "revocation_endpoint": f"{root}/o/revoke_token/",
                    "introspection_endpoint": f"{root}/o/introspect/",
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                    "grant_types_supported": ["authorization_code", "client_credentials"],
                    "scopes_supported": sorted(settings.OAUTH2_PROVIDER["SCOPES"]),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "capabilities": ["client-confidential-symmetric", "permission-user"],
                }
            ),
            content_type="application/json",
        )


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
            return _bundle(total=0, links=[("self", self._self(request, params))], entries=[])
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
        entries = [
            json.dumps(
                {
                    "fullUrl": f"{base}/Patient/{p.public_id}",
                    "resource": patient_resource(p),
                    "search": {"mode": "match"},
                }
            )
            for p in found.patients
        ]
        if found.too_many:
            entries.append(
                json.dumps(
                    {
                        "resource": outcome(
                            "warning",
                            "too-costly",
                            "More people match than can be shown: add gender or "
                            "address-postalcode, or search by NHS number.",
                        ),
                        "search": {"mode": "outcome"},
                    }
                )
            )
        return _bundle(
            total=len(found.patients), links=[("self", self._self(request, params))],
            entries=entries,
        )  # fmt: skip

    def _self(self, request: Request, params: list[tuple[str, str]]) -> str:
        # The NHS number is not echoed back in links (links end up in logs).
        kept = [(k, v) for k, v in params if k not in ("identifier", "family", "birthdate")]
        return _link(self.base(request), "Patient", kept)


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
            caller=caller, basis=basis, patient_id=_uuid_or_404(patient_id),
            context=context_for(request),
        )  # fmt: skip
        return _json_response(patient_resource(patient))


def _uuid_or_404(value: str) -> str:
    # uuid.UUID() reads any Unicode digit as hex: only an ASCII id can name a row.
    if not value.isascii():
        raise Http404
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise Http404 from exc


class PatientEverythingApi(FhirApi):
    """Patient/<id>/$everything: the whole record this caller may see, paged and stable."""

    params = frozenset({"_since", "_type", "_count", "_cursor"})

    @extend_schema(exclude=True)
    def get(self, request: Request, patient_id: str) -> HttpResponseBase:
        caller = self.caller(request, READABLE_TYPES)
        basis = self.basis(request)
        params = self.search_params(request)
        search = parse_everything(
            params, page_size=_page_size(), page_max=_page_max(), readable=READABLE_TYPES
        )
        types = caller.types if search.types is None else caller.types & search.types
        where = Q() if search.since is None else Q(updated_at__gte=search.since)
        query = query_key(params)
        cursor = _cursor(search.cursor, query)
        identifier = _uuid_or_404(patient_id)
        page = api_entries_page(
            caller=caller, basis=basis, patient_id=identifier, types=types, where=where,
            count=search.count, cursor=cursor, query=query, interaction="everything",
            context=context_for(request),
        )  # fmt: skip
        base = self.base(request)
        response = _page_response(base, f"Patient/{identifier}/$everything", params, page)
        if cursor is None and "Patient" in types:
            # The person comes first, on the first page (FHIR: the Patient is in $everything).
            person = json.dumps(
                {
                    "fullUrl": f"{base}/Patient/{identifier}",
                    "resource": patient_resource(page.patient),
                    "search": {"mode": "match"},
                }
            )
            response.streaming_content = _prepend(
                cast(Iterator[bytes], response.streaming_content), person
            )
        return response


def _prepend(chunks: Iterator[bytes], entry: str) -> Iterator[bytes]:
    """Put one more entry at the start of a streamed Bundle's entry array."""
    head = next(chunks).decode()
    if head.endswith('"entry":['):
        yield (head + entry + ",").encode()
    else:
        yield (head[:-1] + ',"entry":[' + entry + "]}").encode()
    yield from chunks


class TypeSearchApi(FhirApi):
    """A search of one resource type in one person's record."""

    params = frozenset(
        {"patient", "date", "category", "code", "status", "_lastUpdated", "_count", "_cursor",
         "_revinclude"}
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
        where = (
            _date_filter("effective_at", search.date)
            & _date_filter("updated_at", search.last_updated)
            & _any_of(search.code, _code)
            & _any_of(search.status, lambda s: Q(status=s))
            & _any_of(search.category, _category)
        )
        query = query_key(params)
        cursor = _cursor(search.cursor, query)
        try:
            page = api_entries_page(
                caller=caller, basis=basis, patient_id=_uuid_or_404(search.patient),
                types=frozenset({resource_type}), where=where, count=search.count,
                cursor=cursor, query=query, interaction="search-type",
                context=context_for(request),
            )  # fmt: skip
        except (PatientNotFound, Http404):
            # A person the caller may not see answers like nobody: an empty search.
            links = [("self", _link(self.base(request), resource_type, params))]
            return _bundle(total=0, links=links, entries=[])
        return _page_response(
            self.base(request), resource_type, params, page,
            revinclude=search.revinclude_provenance,
        )  # fmt: skip


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
        row = api_entry_read(
            caller=caller, basis=basis, resource_type=resource_type, entry_id=entry_id,
            context=context_for(request),
        )  # fmt: skip
        return HttpResponse(row.text, content_type=FHIR_JSON)


def capability_statement(base: str) -> dict[str, Any]:
    """What the server does, and nothing it does not (read and search only)."""
    type_params = [
        ("patient", "reference", "The person (required)"),
        ("date", "date", "The clinical date (eq, ne, gt, ge, lt, le, sa, eb)"),
        ("category", "token", "Category code, optionally system|code"),
        ("code", "token", "Code, optionally system|code"),
        ("status", "token", "Status"),
        ("_lastUpdated", "date", "When the record last changed"),
        ("_count", "number", f"Page size, at most {settings.FHIR_PAGE_MAX}"),
    ]
    resources: list[dict[str, Any]] = [
        {
            "type": "Patient",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {
                    "name": "identifier",
                    "type": "token",
                    "documentation": "https://fhir.nhs.uk/Id/nhs-number|<NHS number>",
                },
                {"name": "family", "type": "string", "documentation": "With birthdate"},
                {"name": "birthdate", "type": "date", "documentation": "With family"},
                {"name": "gender", "type": "token"},
                {"name": "address-postalcode", "type": "string"},
            ],
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            ],
        }
    ]
    for resource_type in SEARCHABLE_TYPES:
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchRevInclude": ["Provenance:target"],
                "searchParam": [
                    {"name": n, "type": t, "documentation": d} for n, t, d in type_params
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.localdate().isoformat(),
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "implementation": {"description": "Shared care record: read API", "url": base},
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Send X-Purpose-Of-Use: TREAT (or ETREAT with "
                    "X-Break-Glass-Reason and X-Break-Glass-Justification) with every read."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth2 bearer tokens with SMART v1 scopes.",
                },
                "resource": resources,
            }
        ],
    }
