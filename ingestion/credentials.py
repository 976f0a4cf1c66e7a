"""Feed credentials: issue, revoke and authenticate partner tokens; the actor a feed audits as."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditActor, audit_event_record
from ingestion.models import FeedCredential
from sharedrecord.models import Organisation

# The audit actor of background work (STYLE.md: system="ingestion").
INGESTION = "ingestion"
TOKEN_PREFIX = "sr"  # noqa: S105 - a label on tokens, not a secret


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def feed_credential_issue(
    *, organisation: Organisation, system: str, actor: AuditActor | None = None
) -> tuple[FeedCredential, str]:
    """Make a new credential for a partner system; return it and the token (shown once).

    Only the token's SHA-256 is stored. Side effects: one audit event naming `actor`
    (the member of staff, or the command line when None).
    """
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    credential = FeedCredential(
        organisation=organisation, system=system, prefix=prefix, token_hash=_token_hash(token)
    )
    credential.full_clean()
    credential.save()
    _audit_credential_change(credential, "issued", actor)
    return credential, token


def _audit_credential_change(
    credential: FeedCredential, change: str, actor: AuditActor | None
) -> None:
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=actor or AuditActor.system("manage.py"),
        detail={
            "model": "ingestion.FeedCredential",
            "object": str(credential.public_id),
            "change": change,
        },
        source_ods=[credential.organisation.ods_code],
    )


@transaction.atomic
def feed_credential_revoke(
    *, credential: FeedCredential, actor: AuditActor | None = None
) -> FeedCredential:
    """Stop a credential working from now on (idempotent). Side effects: one audit event."""
    if credential.revoked_at is None:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
        _audit_credential_change(credential, "revoked", actor)
    return credential


def feed_credential_authenticate(*, token: str) -> FeedCredential | None:
    """The live credential this token belongs to, or None (unknown, wrong or revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    credential = (
        FeedCredential.objects.select_related("organisation").filter(prefix=parts[1]).first()
    )
    if credential is None or credential.revoked_at is not None:
        return None
    if not hmac.compare_digest(credential.token_hash, _token_hash(token)):
        return None
    now = timezone.now()
    # Noted to the minute: a write (and a commit's flush) per message would cost a busy
    # feed more than the message itself.
    if credential.last_used_at is None or now - credential.last_used_at >= LAST_USED_EVERY:
        FeedCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential


LAST_USED_EVERY = datetime.timedelta(minutes=1)


def feed_actor(credential: FeedCredential) -> AuditActor:
    """The audit actor of a partner system: its name, organisation and credential id."""
    return AuditActor.system(
        credential.system, org_ods=credential.organisation.ods_code, id=credential.public_id
    )
