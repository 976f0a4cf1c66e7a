"""Live pull: ask each pull source for a person at the moment of care; store nothing.

Steps (record_pull):
1. Opted-out people are never pulled for: the opt-out registry is asked
   first, and if it blocks, no source is asked (the audit says so).
2. Each source's settings and secret are read here, on the request's thread
   (threads never touch the database).
3. Every source is asked in parallel, each within its own timeout (token,
   `Patient/_search` by NHS number, then `$everything` or one search per
   type). The request carries the viewer's identity, role, organisation and
   purpose of use in headers so the source can audit too.
4. Each answer is validated as a feed entry would be (ingestion/fhir's
   parser, which stores nothing) and only entries about the person found
   are kept.
5. Each item is scoped by the viewer's policy (access.pulled_item_visible)
   and redacted (ViewPolicy.redact), as stored entries are.
6. One audit event per source: which source, what came back (ids shown,
   counts withheld and invalid), or that it did not answer.
Nothing is written but the audit events: no entry, no cache of the answers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from jwcrypto import jwk, jwt  # type: ignore[import-untyped]

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditContext, audit_event_record
from ingestion.fhir.bundle import parse_bundle
from ingestion.fhir.profile import NHS_NUMBER_SYSTEM, SUPPORTED
from ingestion.fhir.results import FeedRejected, ParsedEntry
from optout.selectors import optout_blocks
from sharedrecord import fhirjson
from sharedrecord.access import (
    ViewPolicy,
    entry_sensitivity_flag,
    pull_sources_for,
    pulled_item_visible,
)
from sharedrecord.auditing import actor_for
from sharedrecord.env import env_secret
from sharedrecord.live import AnswerKind, LiveAnswer, LiveItem, LivePull
from sharedrecord.models import Patient, PullAuth, PullSearch, PullSource, User
from sharedrecord.search import audit_subject_of

logger = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
# A source's answer is read up to this many entries (pages of $everything followed).
MAX_ENTRIES = 2000
MAX_PAGES = 10


@dataclass(frozen=True)
class SourceCall:
    """What a worker thread needs to ask one source: plain values, no ORM objects."""

    key: str
    name: str
    ods: str
    organisation_id: int
    base_url: str
    token_url: str
    auth: str
    client_id: str
    secret: str
    key_id: str
    scope: str
    search: str
    resource_types: tuple[str, ...]
    timeout: float


class SourceSilent(Exception):
    """The source did not give a usable answer (refused, failed, or sent something unreadable)."""


# ------------------------------------------------------------------ OAuth2 tokens, per source

_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _client_assertion(call: SourceCall) -> str:
    """An RFC 7523 private-key JWT naming this client, for the source's token endpoint."""
    key = jwk.JWK.from_pem(call.secret.encode())
    now = int(time.time())
    claims = {
        "iss": call.client_id,
        "sub": call.client_id,
        "aud": call.token_url,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
    }
    alg = "RS384" if key.get("kty") == "RSA" else "ES384"
    token = jwt.JWT(header={"alg": alg, "kid": call.key_id, "typ": "JWT"}, claims=claims)
    token.make_signed_token(key)
    return str(token.serialize())


def _access_token(call: SourceCall, session: requests.Session, deadline: float) -> str:
    """This source's bearer token, kept until shortly before it expires."""
    with _tokens_lock:
        held = _tokens.get(call.key)
        if held is not None and held[1] > time.monotonic():
            return held[0]
    form = {"grant_type": "client_credentials"}
    if call.scope:
        form["scope"] = call.scope
    auth: tuple[str, str] | None = None
    if call.auth == PullAuth.PRIVATE_KEY_JWT:
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = _client_assertion(call)
        form["client_id"] = call.client_id
    else:
        auth = (call.client_id, call.secret)
    response = session.post(call.token_url, data=form, auth=auth, timeout=_left(deadline))
    if response.status_code != 200:
        raise SourceSilent("token")
    body = response.json()
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise SourceSilent("token")
    expires_in = body.get("expires_in", 300)
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
    with _tokens_lock:
        _tokens[call.key] = (token, time.monotonic() + max(0.0, lifetime - 30))
    return token


def pull_tokens_forget() -> None:
    """Drop every cached token (a source's credentials changed; tests)."""
    with _tokens_lock:
        _tokens.clear()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


# ------------------------------------------------------------------ asking one source


def _fhir_json(response: requests.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise SourceSilent(f"http-{response.status_code}")
    try:
        body = fhirjson.loads(response.content)
    except ValueError as exc:
        raise SourceSilent("unreadable") from exc
    if not isinstance(body, dict):
        raise SourceSilent("unreadable")
    return body


def _bundle_resources(
    session: requests.Session, first: requests.Response, deadline: float
) -> list[dict[str, Any]]:
    """The resources of a searchset Bundle, following `next` links within the deadline."""
    resources: list[dict[str, Any]] = []
    response = first
    for _ in range(MAX_PAGES):
        bundle = _fhir_json(response)
        if bundle.get("resourceType") != "Bundle":
            raise SourceSilent("unreadable")
        for entry in bundle.get("entry", []) or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                mode = (entry.get("search") or {}).get("mode", "match")
                if mode != "outcome":
                    resources.append(entry["resource"])
        links = bundle.get("link", []) or []
        following = [
            link.get("url")
            for link in links
            if isinstance(link, dict) and link.get("relation") == "next"
        ]
        if not following or not isinstance(following[0], str) or len(resources) >= MAX_ENTRIES:
            break
        response = session.get(following[0], timeout=_left(deadline))
    return resources[:MAX_ENTRIES]


def _ask(call: SourceCall, nhs_number: str, headers: dict[str, str]) -> tuple[str, list[Any]]:
    """Ask one source (in a worker thread); return ("answered"|"not-found"|"ambiguous", items).

    Items are ParsedEntry values (validated like a feed's) about the person the
    source found for this NHS number, and one None for each resource refused
    (see _parsed). A token the source no longer accepts is forgotten, so the
    next view asks for a new one.
    """
    deadline = time.monotonic() + call.timeout
    with requests.Session() as session:
        session.headers.update(headers)
        token = _access_token(call, session, deadline)
        session.headers["Authorization"] = f"Bearer {token}"
        base = call.base_url.rstrip("/")
        # The NHS number travels in the body (POST _search), never in a URL that a log keeps.
        found = session.post(
            f"{base}/Patient/_search",
            data={"identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}"},
            timeout=_left(deadline),
        )
        if found.status_code == 401:
            with _tokens_lock:
                _tokens.pop(call.key, None)
        people = [
            r
            for r in _bundle_resources(session, found, deadline)
            if r.get("resourceType") == "Patient"
        ]
        if not people:
            return "not-found", []
        if len(people) > 1 or not isinstance(people[0].get("id"), str):
            return "ambiguous", []  # never pick one of several
        person = people[0]
        person_id = person["id"]
        resources: list[dict[str, Any]] = []
        if call.search == PullSearch.EVERYTHING:
            first = session.get(f"{base}/Patient/{person_id}/$everything", timeout=_left(deadline))
            resources = _bundle_resources(session, first, deadline)
        else:
            for resource_type in call.resource_types:
                first = session.get(
                    f"{base}/{resource_type}",
                    params={"patient": person_id},
                    timeout=_left(deadline),
                )
                resources.extend(_bundle_resources(session, first, deadline))
    return "answered", _parsed(call, person, resources)


def _parsed(call: SourceCall, person: dict[str, Any], resources: list[dict[str, Any]]) -> list[Any]:
    """The answer validated as a feed's entries would be; only the found person's items.

    Returns ParsedEntry values, and one `None` for each resource refused
    (invalid, unsupported, another person's, a type not configured).
    """
    base = call.base_url.rstrip("/")
    wanted = set(call.resource_types)
    kept = [
        r
        for r in resources
        if r.get("resourceType") in wanted and r.get("resourceType") in SUPPORTED
    ]
    refused: list[Any] = [None] * (
        len([r for r in resources if r.get("resourceType") != "Patient"]) - len(kept)
    )
    entries = [{"fullUrl": f"{base}/Patient/{person['id']}", "resource": person}]
    seen = {entries[0]["fullUrl"]}
    for resource in kept:
        full_url = f"{base}/{resource.get('resourceType')}/{resource.get('id')}"
        if full_url in seen:
            refused.append(None)
            continue
        seen.add(full_url)
        entries.append({"fullUrl": full_url, "resource": resource})
    document = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    try:
        parsed = parse_bundle(
            fhirjson.dumps(document).encode(), "json", max_entries=MAX_ENTRIES + 1
        )
    except FeedRejected as exc:
        raise SourceSilent("unreadable") from exc
    refused.extend(None for issue in parsed.issues if issue.severity == "error" and issue.index)
    items: list[Any] = []
    for entry in parsed.entries:
        if entry.resource_type == "Patient" or entry.deleted:
            continue
        if entry.patient is None or entry.patient.kind != "bundle" or entry.patient.value != "0":
            refused.append(None)  # about someone else (or no one we can tell)
            continue
        items.append(entry)
    return items + refused


# ------------------------------------------------------------------ the whole pull


def _calls(sources: list[PullSource]) -> tuple[list[SourceCall], list[PullSource]]:
    """Each source's call; sources whose secret is not configured are returned apart."""
    calls, broken = [], []
    for source in sources:
        try:
            secret = env_secret(source.secret_name)
        except ImproperlyConfigured:
            broken.append(source)
            continue
        calls.append(
            SourceCall(
                key=str(source.public_id),
                name=source.organisation.name,
                ods=source.organisation.ods_code,
                organisation_id=source.organisation_id,
                base_url=source.base_url,
                token_url=source.token_url,
                auth=source.auth,
                client_id=source.client_id,
                secret=secret,
                key_id=source.key_id,
                scope=source.scope,
                search=source.search,
                resource_types=tuple(source.resource_types),
                timeout=float(source.timeout_seconds),
            )
        )
    return calls, broken


def pull_headers(
    *, viewer: User, purpose: str, reason_code: str, reason_text: str, request_id: str
) -> dict[str, str]:
    """Who is asking and why, for the source's own audit (no personal data of the patient)."""
    organisation = viewer.organisation
    headers = {
        "Accept": FHIR_JSON,
        "X-Request-User": str(viewer.public_id),
        "X-Request-User-Name": (viewer.get_full_name() or viewer.username)[:150],
        "X-Request-User-Role": f"{viewer.role} {viewer.rbac_code}".strip()[:64],
        "X-Request-User-Organisation": organisation.ods_code if organisation else "",
        "X-Purpose-Of-Use": purpose,
    }
    if purpose == "ETREAT":
        headers["X-Break-Glass-Reason"] = reason_code
        headers["X-Break-Glass-Justification"] = reason_text
    if request_id:
        headers["X-Request-ID"] = request_id
    # Header values are latin-1 on the wire: keep to printable ASCII.
    return {k: "".join(c if " " <= c <= "~" else "?" for c in v) for k, v in headers.items()}


def _shown(
    call: SourceCall, parsed: list[Any], policy: ViewPolicy
) -> tuple[list[LiveItem], int, int]:
    """The items this viewer sees (redacted), and the counts withheld and refused."""
    shown: list[LiveItem] = []
    withheld = refused = 0
    for entry in parsed:
        if not isinstance(entry, ParsedEntry):
            refused += 1
            continue
        data = entry.data
        if not pulled_item_visible(
            policy=policy, source_org_id=call.organisation_id, section=data.section,
            sensitivity=data.sensitivity, codes=data.codes,
        ):  # fmt: skip
            withheld += 1
            continue
        shown.append(
            LiveItem(
                resource_type=data.resource_type,
                source_id=data.source_id,
                section=data.section,
                display=data.code_display or data.code or data.resource_type,
                status=data.status,
                effective_at=data.effective_at,
                sensitive=entry_sensitivity_flag(sensitivity=data.sensitivity, codes=data.codes),
                resource=policy.redact(data.resource_type, data.resource),
            )
        )
    shown.sort(key=lambda i: (i.section, -(i.effective_at.timestamp() if i.effective_at else 0)))
    return shown, withheld, refused


def _silent_answer(call_name: str, ods: str, base_url: str, kind: AnswerKind) -> LiveAnswer:
    return LiveAnswer(call_name, ods, base_url, kind, timezone.now())


def record_pull(
    *,
    viewer: User,
    patient: Patient,
    policy_of: Callable[[], ViewPolicy],
    purpose: str,
    reason_code: str,
    reason_text: str,
    via: str,
    context: AuditContext | None,
) -> LivePull:
    """Ask every pull source for this person, in parallel, each within its timeout; audited.

    See the module's steps. Guarantees: nothing a source answers is written
    anywhere; a source that times out, fails, or cannot be asked is in the
    result (kind "timeout" or "error"), never silently missing; an opted-out
    person is never pulled for.
    Side effects: one audit event per source asked (or one saying that the
    opt-out stopped the pull), in one transaction.
    """
    sources = list(pull_sources_for(viewer))
    if not sources:
        return LivePull()
    subject = audit_subject_of(patient)
    if optout_blocks(nhs_number=patient.nhs_number):
        audit_event_record(
            action=AuditAction.LIVE_PULL, actor=actor_for(viewer), subject=subject,
            purpose=purpose, detail={"via": via, "asked": [], "reason": "opted-out"},
            context=context,
        )  # fmt: skip
        return LivePull(opted_out=True)
    calls, broken = _calls(sources)
    policy = policy_of()
    headers = pull_headers(
        viewer=viewer, purpose=purpose, reason_code=reason_code, reason_text=reason_text,
        request_id=context.request_id if context else "",
    )  # fmt: skip
    answers: dict[str, LiveAnswer] = {}
    details: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(calls)), thread_name_prefix="pull")
    try:
        started = time.monotonic()
        futures: list[tuple[SourceCall, Future[tuple[str, list[Any]]]]] = [
            (call, pool.submit(_ask, call, patient.nhs_number, headers)) for call in calls
        ]
        for call, future in futures:
            key = call.key
            try:
                kind, parsed = future.result(
                    timeout=max(0.0, started + call.timeout - time.monotonic())
                )
            except (TimeoutError, requests.Timeout):
                answers[key] = _silent_answer(call.name, call.ods, call.base_url, "timeout")
                details[key] = {"answer": "timeout", "timeout_seconds": call.timeout}
                continue
            except (SourceSilent, requests.RequestException, ValueError) as exc:
                answers[key] = _silent_answer(call.name, call.ods, call.base_url, "error")
                details[key] = {"answer": "error", "problem": _problem(exc)}
                continue
            except Exception:
                # One source's unexpected answer must not take the whole record page down:
                # it is logged (with the source's id, never the person) and the source named.
                logger.exception("live pull from source %s failed unexpectedly", key)
                answers[key] = _silent_answer(call.name, call.ods, call.base_url, "error")
                details[key] = {"answer": "error", "problem": "unexpected"}
                continue
            items, withheld, refused = _shown(call, parsed, policy)
            answers[key] = LiveAnswer(
                call.name, call.ods, call.base_url, kind,  # type: ignore[arg-type]
                timezone.now(), tuple(items), withheld,
            )  # fmt: skip
            details[key] = {
                "answer": kind,
                "received": len(parsed),
                "shown": [f"{i.resource_type}/{i.source_id}" for i in items][:500],
                "withheld": withheld,
                "invalid": refused,
            }
    finally:
        # A source still talking after its timeout is left to finish on its own thread
        # (its socket timeout bounds it); the page does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)
    for source in broken:
        key = str(source.public_id)
        answers[key] = _silent_answer(
            source.organisation.name, source.organisation.ods_code, source.base_url, "error"
        )
        details[key] = {"answer": "error", "problem": "not-configured"}
    ordered = [answers[str(s.public_id)] for s in sources]
    with transaction.atomic():
        for source in sources:
            key = str(source.public_id)
            answer = answers[key]
            audit_event_record(
                action=AuditAction.LIVE_PULL,
                actor=actor_for(viewer),
                outcome=AuditOutcome.SUCCESS
                if answer.answered or answer.kind == "ambiguous"
                else AuditOutcome.FAILED,
                subject=subject,
                purpose=purpose,
                detail={
                    "via": via,
                    "source": source.organisation.ods_code,
                    "source_name": source.organisation.name,
                    "pull_source": key,
                    **details[key],
                },
                source_ods=[source.organisation.ods_code],
                context=context,
            )
    return LivePull(answers=tuple(ordered))


def _problem(exc: Exception) -> str:
    """A short reason for the audit trail (never the source's words: they may name the person)."""
    if isinstance(exc, SourceSilent):
        return str(exc)[:40]
    if isinstance(exc, requests.ConnectionError):
        return "connection"
    return type(exc).__name__[:40]
