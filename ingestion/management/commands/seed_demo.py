"""Load the demo borough: organisations, a demo user for every role, and synthetic feeds."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from ingestion.credentials import feed_credential_issue
from ingestion.demo import demo_feeds
from ingestion.fhir.envelope import read_envelope
from ingestion.models import FeedCredential, MessageKind
from ingestion.receiving import feed_message_receive
from sharedrecord import demo
from sharedrecord.clients import api_client_register
from sharedrecord.models import Organisation
from sharedrecord.organisations import (
    organisation_grant_optout_management,
    organisation_upsert,
    staff_user_upsert,
)


class Command(BaseCommand):
    help = "Create or refresh the demo borough (idempotent: running it twice changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Known passwords only in development; elsewhere demo users start with
        # unusable passwords and are given one through the admin.
        password = settings.DEMO_PASSWORD if settings.DEBUG else None
        with transaction.atomic():
            orgs = {
                spec.ods_code: organisation_upsert(
                    ods_code=spec.ods_code,
                    name=spec.name,
                    kind=spec.kind,
                    dsa_start=demo.AGREEMENT_START,
                    phone=spec.phone,
                )
                for spec in demo.ORGANISATIONS
            }
            for spec in demo.USERS:
                user = staff_user_upsert(
                    username=spec.username,
                    organisation=orgs[spec.ods_code],
                    role=spec.role,
                    first_name=spec.first_name,
                    last_name=spec.last_name,
                    password=password,
                )
                if spec.manages_optouts:
                    organisation_grant_optout_management(user=user, organisation=user.organisation)  # type: ignore[arg-type]
        sent = self._send_feeds()
        self.stdout.write(
            f"Demo borough: {len(orgs)} organisations, {len(demo.USERS)} users, "
            f"{sent} feed messages sent through the feed pipeline."
        )
        if password is not None:
            self.stdout.write("Demo sign-ins (development only):")
            for spec in demo.USERS:
                self.stdout.write(
                    f"  {spec.username:<18} {spec.role.label} at {orgs[spec.ods_code].name}"
                )
            self.stdout.write(f"  password for all: {password}")
            # A partner system for the FHIR read API, with a known secret (development only).
            api_client_register(
                name="Demo partner EPR", grant="client-credentials", organisation=orgs["ZAC01"],
                role="clinical-practitioner", client_id=DEMO_API_CLIENT, client_secret=password,
            )  # fmt: skip
            self.stdout.write(
                f"FHIR read API (development only): client_id {DEMO_API_CLIENT}, "
                'client secret the demo password; see README "The FHIR read API".'
            )

    def _send_feeds(self) -> int:
        """Send each organisation's synthetic feed the way a partner system's would arrive.

        Each message is stored, committed and queued for the Celery workers;
        a message already sent today is a redelivery and changes nothing.
        """
        sent = 0
        for ods_code, bundle in demo_feeds():
            organisation = Organisation.objects.get(ods_code=ods_code)
            credential = (
                FeedCredential.objects.filter(
                    organisation=organisation, system=DEMO_SYSTEM, revoked_at__isnull=True
                ).first()
                or feed_credential_issue(organisation=organisation, system=DEMO_SYSTEM)[0]
            )
            payload = json.dumps(bundle).encode()
            envelope = read_envelope(payload, "json", max_entries=settings.FEED_MAX_ENTRIES)
            received = feed_message_receive(
                credential=credential,
                kind=MessageKind.FHIR_JSON,
                payload=payload,
                idempotency_key=envelope.bundle_id,
                entry_count=envelope.entry_count,
            )
            sent += not received.duplicate
        return sent


DEMO_SYSTEM = "Demo feed"
DEMO_API_CLIENT = "demo-partner-epr"
