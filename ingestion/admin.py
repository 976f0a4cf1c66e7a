"""Admin: issue and revoke partner credentials; read, never edit, messages and the queue."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from audit.context import context_for
from audit.models import AuditAction
from audit.trail import AuditSubject, audit_event_record
from ingestion.credentials import feed_credential_issue, feed_credential_revoke
from ingestion.models import FeedCredential, FeedMessage, MatchQueueItem
from ingestion.recovery import feed_message_replay
from sharedrecord.auditing import actor_for
from sharedrecord.matching import nhs_number_is_valid


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FeedCredential)
class FeedCredentialAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("system", "organisation", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("organisation",)
    fields = ("organisation", "system", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: receipts keep pointing at the credential

    def save_model(
        self, request: HttpRequest, obj: FeedCredential, form: Any, change: bool
    ) -> None:
        credential, token = feed_credential_issue(
            organisation=obj.organisation,
            system=obj.system,
            actor=actor_for(request.user),  # type: ignore[arg-type]
        )
        obj.pk, obj.prefix = credential.pk, credential.prefix
        messages.warning(
            request, f"Token for {credential.system} (shown once, store it now): {token}"
        )

    @admin.action(description="Revoke the selected credentials")
    def revoke(self, request: HttpRequest, queryset: QuerySet[FeedCredential]) -> None:
        for credential in queryset:
            feed_credential_revoke(credential=credential, actor=actor_for(request.user))  # type: ignore[arg-type]


@admin.register(FeedMessage)
class FeedMessageAdmin(ReadOnlyAdmin):
    """Inbound messages, read-only; failed ones (status "Failed") can be replayed.

    The list shows ids, counts and where processing failed, never content.
    A replay needs the "replay failed feed message" permission and is audited.
    """

    list_display = (
        "public_id", "organisation", "kind", "status", "attempts", "failed_stage",
        "failed_entries", "entry_count", "received_at",
    )  # fmt: skip
    list_filter = ("status", "kind", "organisation")
    exclude = ("payload",)
    actions = ("replay",)

    @admin.display(description="failed stage")
    def failed_stage(self, obj: FeedMessage) -> str:
        return str(obj.failure.get("stage", "")) if obj.failure else ""

    @admin.display(description="failed entries")
    def failed_entries(self, obj: FeedMessage) -> str:
        entries = obj.failure.get("entries", []) if obj.failure else []
        return ", ".join(str(i) for i in entries[:10])

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ingestion.replay_feedmessage")

    @admin.action(description="Replay the selected failed messages", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[FeedMessage]) -> None:
        actor = actor_for(request.user)  # type: ignore[arg-type]
        replayed = sum(
            feed_message_replay(message=message, actor=actor)
            for message in queryset.select_related("organisation")
        )
        skipped = queryset.count() - replayed
        messages.info(
            request,
            f"{replayed} message(s) queued again"
            + (f"; {skipped} were not failed and were left alone." if skipped else "."),
        )


@admin.register(MatchQueueItem)
class MatchQueueItemAdmin(ReadOnlyAdmin):
    """Entries that could not be linked to a person with certainty: ids and states only.

    Never the parked resource or its columns: a parked entry is in nobody's
    record, so no role may see its clinical content (data quality officers
    decide cases on the workbench, /workbench/, from the identifiers and
    demographics sent). The list shows no personal data; opening an item
    shows the NHS number sent, so each opening is an audited read (written
    before the page is built, so a failed audit write means no page).
    """

    list_display = ("resource_type", "organisation", "reason", "state", "created_at", "resolved_at")
    list_filter = ("reason", "state", "organisation")
    exclude = ("resource", "entry_data")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        item = MatchQueueItem.objects.filter(pk=object_id).first()
        if item is not None:
            sent = item.nhs_number_sent
            audit_event_record(
                action=AuditAction.MATCH_QUEUE_VIEW,
                actor=actor_for(request.user),  # type: ignore[arg-type]
                subject=AuditSubject(nhs_number=sent if nhs_number_is_valid(sent) else ""),
                detail={"item": str(item.public_id), "reason": item.reason},
                source_ods=[item.organisation.ods_code],
                context=context_for(request),
            )
        return super().change_view(request, object_id, form_url, extra_context)
