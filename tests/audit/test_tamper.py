"""Tampering that the hash chain alone cannot see: a cut-off tail and changed findings.

Each test tampers as the database's owner or a superuser could (raw SQL with
the append-only triggers switched off inside the test's own transaction, which
rolls back), then shows that `audit_verify` reports it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.governance import GovernanceViewer, access_review_record
from audit.integrity import audit_chain_verify
from audit.models import AccessReview, AuditAction, AuditCheckpoint, AuditEvent, ReviewOutcome
from audit.selectors import GovernanceScope
from audit.trail import (
    AuditActor,
    AuditContext,
    AuditSubject,
    audit_event_record,
    chain_link,
    event_hashed_fields,
)

pytestmark = pytest.mark.django_db  # every test's tampering rolls back with it

ACTOR = AuditActor.system("tamper-tests", org_ods="ZSR01")
KEY = "a-test-checkpoint-key-that-is-long-enough"


@pytest.fixture(autouse=True)
def _checkpoint_key(settings: Any) -> None:
    settings.AUDIT_CHECKPOINT_KEY = KEY
    settings.AUDIT_CHECKPOINT_KEY_FILE = ""


def _record(**overrides: Any) -> AuditEvent:
    kwargs: dict[str, Any] = {
        "action": AuditAction.RECORD_VIEW,
        "actor": ACTOR,
        "subject": AuditSubject(patient_id=uuid.uuid4(), nhs_number="9434765919", gp_ods="Z81001"),
        "purpose": "direct-care",
        "detail": {"sections": ["allergies"]},
        "context": AuditContext(request_id="tamper"),
    }
    kwargs.update(overrides)
    return AuditEvent.objects.get(id=audit_event_record(**kwargs))


def _as_superuser(table: str, trigger: str, *statements: tuple[str, list[Any]]) -> None:
    """Do what a superuser could: switch off a guard, change the table, switch it back on."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def _cut_tail(keep: AuditEvent) -> None:
    """Delete every event after `keep` in its stripe and move the stripe's head back to it."""
    _as_superuser(
        "audit_event",
        "audit_event_append_only",
        ("DELETE FROM audit_event WHERE stripe = %s AND seq > %s", [keep.stripe, keep.seq]),
        (
            "UPDATE audit_chain_head SET seq = %s, hash = %s WHERE stripe = %s",
            [keep.seq, keep.hash, keep.stripe],
        ),
    )


def _verify() -> tuple[str, str]:
    """Run audit_verify; return its output and errors, raising CommandError when broken."""
    out, err = StringIO(), StringIO()
    call_command("audit_verify", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _verify_broken() -> str:
    err = StringIO()
    with pytest.raises(CommandError, match="tampered with"):
        call_command("audit_verify", stdout=StringIO(), stderr=err)
    return err.getvalue()


# ------------------------------------------------------------------ finding 1: the tail


def test_audit_verify_checkpoints_each_stripe_and_logs_it_without_personal_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _record()
    last = _record()
    with caplog.at_level(logging.INFO, logger="audit.checkpoint"):
        out, _ = _verify()
    assert "Audit trail intact" in out
    checkpoint = AuditCheckpoint.objects.filter(stripe=last.stripe).order_by("-id").first()
    assert checkpoint is not None
    assert (checkpoint.seq, checkpoint.event_id, checkpoint.hash) == (last.seq, last.id, last.hash)
    assert checkpoint.events == last.seq  # every row of the stripe, none missing
    signed = hmac.new(KEY.encode(), checkpoint.signed_message(), hashlib.sha256).hexdigest()
    assert checkpoint.signature == signed
    (line,) = [r.getMessage() for r in caplog.records if f"stripe={last.stripe} " in r.getMessage()]
    assert f"seq={last.seq}" in line
    assert f"event={last.id}" in line
    assert f"hash={last.hash[:16]}" in line
    assert last.hash not in line  # a prefix to compare, not the whole link
    assert "9434765919" not in caplog.text


def test_verify_finds_the_newest_events_deleted_and_the_head_moved_back() -> None:
    kept = _record()
    _record()
    last = _record()
    _verify()  # checkpoints the stripe at `last`
    _cut_tail(kept)
    err = _verify_broken()
    assert f"stripe {last.stripe} at seq {last.seq}" in err
    assert f"the chain ends at seq {kept.seq}" in err
    assert "the last rows were deleted" in err


def test_verify_finds_the_head_moved_back_behind_a_checkpoint() -> None:
    _record()
    last = _record()
    _verify()
    # Only the head moves back: the rows are still there.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_chain_head SET seq = seq - 1 WHERE stripe = %s", [last.stripe])
    (broken,) = audit_chain_verify().breaks
    assert broken.stripe == last.stripe
    assert "head" in broken.problem


def test_a_checkpoint_changed_to_match_a_cut_tail_is_found() -> None:
    kept = _record()
    last = _record()
    _verify()
    _cut_tail(kept)
    _as_superuser(
        "audit_checkpoint",
        "audit_checkpoint_append_only",
        (
            "UPDATE audit_checkpoint SET seq = %s, event_id = %s, hash = %s, events = %s "
            "WHERE stripe = %s",
            [kept.seq, kept.id, kept.hash, kept.seq, kept.stripe],
        ),
    )
    err = _verify_broken()
    assert f"stripe {last.stripe}" in err
    assert "not signed with the checkpoint key" in err


def test_a_forged_checkpoint_cannot_hide_a_cut_tail() -> None:
    kept = _record()
    last = _record()
    _verify()
    _cut_tail(kept)
    # The application role may INSERT checkpoints, but cannot sign them.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_checkpoint (taken_at, stripe, seq, event_id, hash, events, "
            "signature) VALUES (now(), %s, %s, %s, %s, %s, %s)",
            [kept.stripe, kept.seq, kept.id, kept.hash, kept.seq, "0" * 64],
        )
    err = _verify_broken()
    assert "not signed with the checkpoint key" in err
    assert f"stripe {last.stripe} at seq {last.seq}" in err
    assert f"the chain ends at seq {kept.seq}" in err


def test_rows_rewritten_below_a_checkpoint_are_found_even_when_relinked() -> None:
    first = _record()
    _verify()
    # Rewrite the stripe's last row and recompute its link, as someone who
    # knows the algorithm could: the chain itself is consistent again.
    first.purpose = "curiosity"
    rehashed = chain_link(first.prev_hash, event_hashed_fields(first))
    _as_superuser(
        "audit_event",
        "audit_event_append_only",
        ("UPDATE audit_event SET purpose = %s, hash = %s WHERE id = %s",
         ["curiosity", rehashed, first.id]),
        ("UPDATE audit_chain_head SET hash = %s WHERE stripe = %s", [rehashed, first.stripe]),
    )  # fmt: skip
    err = _verify_broken()
    assert f"stripe {first.stripe} at seq {first.seq} (event {first.id})" in err
    assert "does not match checkpoint" in err


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_checkpoint SET seq = 0",
        "DELETE FROM audit_checkpoint",
        "TRUNCATE audit_checkpoint",
    ],
)
def test_postgresql_refuses_to_change_or_delete_a_checkpoint(statement: str) -> None:
    _record()
    _verify()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(statement)


def test_audit_checkpoint_extends_the_last_checkpoint_and_logs_each() -> None:
    first = _record()
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert f"stripe {first.stripe}: seq {first.seq}" in out.getvalue()
    latest = AuditCheckpoint.objects.filter(stripe=first.stripe).order_by("-id")
    assert latest[0].seq == first.seq

    second = _record()
    call_command("audit_checkpoint", stdout=StringIO())
    assert (latest[0].seq, latest[0].event_id, latest[0].events) == (
        second.seq, second.id, second.seq,
    )  # fmt: skip
    unchanged = AuditCheckpoint.objects.count()
    call_command("audit_checkpoint", stdout=StringIO())  # nothing new: nothing written
    assert AuditCheckpoint.objects.count() == unchanged
    _verify()


def test_audit_checkpoint_refuses_to_anchor_a_stripe_that_was_tampered_with() -> None:
    _record()
    call_command("audit_checkpoint", stdout=StringIO())
    target = _record()
    _as_superuser(
        "audit_event",
        "audit_event_append_only",
        ("UPDATE audit_event SET purpose = 'curiosity' WHERE id = %s", [target.id]),
    )
    before = AuditCheckpoint.objects.filter(stripe=target.stripe).count()
    err = StringIO()
    with pytest.raises(CommandError, match="not checkpointed"):
        call_command("audit_checkpoint", stdout=StringIO(), stderr=err)
    assert f"event {target.id}" in err.getvalue()
    assert AuditCheckpoint.objects.filter(stripe=target.stripe).count() == before


def test_audit_checkpoint_needs_the_key(settings: Any) -> None:
    settings.AUDIT_CHECKPOINT_KEY = ""
    with pytest.raises(CommandError, match="AUDIT_CHECKPOINT_KEY"):
        call_command("audit_checkpoint", stdout=StringIO())


def test_the_key_can_come_from_a_file(settings: Any, tmp_path: Any) -> None:
    secret = tmp_path / "audit_checkpoint_key"
    secret.write_text("another-checkpoint-key-from-a-mounted-file\n")
    settings.AUDIT_CHECKPOINT_KEY = ""
    settings.AUDIT_CHECKPOINT_KEY_FILE = str(secret)
    last = _record()
    call_command("audit_checkpoint", stdout=StringIO())
    checkpoint = AuditCheckpoint.objects.filter(stripe=last.stripe).order_by("-id")[0]
    key = b"another-checkpoint-key-from-a-mounted-file"
    signed = hmac.new(key, checkpoint.signed_message(), hashlib.sha256).hexdigest()
    assert checkpoint.signature == signed


def test_verify_without_the_key_still_finds_a_cut_tail_and_says_what_it_could_not_do(
    settings: Any,
) -> None:
    kept = _record()
    _record()
    _verify()
    settings.AUDIT_CHECKPOINT_KEY = ""
    _cut_tail(kept)
    err = _verify_broken()
    assert "the last rows were deleted" in err
    assert "AUDIT_CHECKPOINT_KEY is not set" in err


# ------------------------------------------------------------------ finding 2: findings


@pytest.fixture
def finding(registered_gp: Any) -> AccessReview:
    flagged = _record(
        action=AuditAction.BREAK_GLASS,
        detail={"review": True, "reason_code": "OVRER", "reason_text": "collapsed in clinic"},
    )
    viewer = GovernanceViewer(user=registered_gp, actor=ACTOR, scope=GovernanceScope())
    return access_review_record(
        viewer=viewer,
        event_id=flagged.id,
        outcome=ReviewOutcome.JUSTIFIED,
        note="Clinic notes confirm the collapse",
        context=AuditContext(request_id="tamper"),
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_accessreview SET outcome = 'not-justified' WHERE id = %s",
        "DELETE FROM audit_accessreview WHERE id = %s",
        "TRUNCATE audit_accessreview",
    ],
)
def test_postgresql_refuses_to_change_or_delete_a_finding(
    finding: AccessReview, statement: str
) -> None:
    params = [finding.id] if "%s" in statement else []
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(statement, params)


def test_verify_finds_a_finding_changed_behind_the_applications_back(
    finding: AccessReview,
) -> None:
    _verify()
    _as_superuser(
        "audit_accessreview",
        "audit_accessreview_append_only",
        ("UPDATE audit_accessreview SET note = 'Nothing to see' WHERE id = %s", [finding.id]),
    )
    err = _verify_broken()
    assert f"finding {finding.public_id}" in err
    assert "changed after it was recorded" in err


def test_verify_finds_a_finding_deleted(finding: AccessReview) -> None:
    _as_superuser(
        "audit_accessreview",
        "audit_accessreview_append_only",
        ("DELETE FROM audit_accessreview WHERE id = %s", [finding.id]),
    )
    err = _verify_broken()
    assert f"finding {finding.public_id}" in err
    assert "was deleted" in err


def test_verify_finds_a_finding_added_without_its_audit_event(
    finding: AccessReview,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_accessreview (public_id, event_id, event_occurred_at, outcome, "
            "note, reviewer_id, reviewer_name, reviewed_at) "
            "SELECT %s, event_id, event_occurred_at, 'not-justified', 'forged', reviewer_id, "
            "reviewer_name, now() FROM audit_accessreview WHERE id = %s",
            [str(uuid.uuid4()), finding.id],
        )
    err = _verify_broken()
    assert "has no audit event" in err


def test_an_intact_finding_verifies(finding: AccessReview) -> None:
    report = audit_chain_verify()
    assert report.intact
    assert report.findings_checked >= 1


def test_the_admin_offers_no_way_to_add_change_or_delete_the_trail_or_findings(
    rf: Any, registered_gp: Any
) -> None:
    from django.contrib import admin

    registered_gp.is_superuser = registered_gp.is_staff = True
    request = rf.get("/admin/")
    request.user = registered_gp
    for model in (AuditEvent, AccessReview, AuditCheckpoint):
        model_admin = admin.site._registry.get(model)
        if model_admin is None:
            continue  # not in the admin at all
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)
