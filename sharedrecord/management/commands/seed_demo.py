"""Load the demo borough: organisations, a demo user for every role, and synthetic feeds."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from sharedrecord import demo
from sharedrecord.services import (
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
        self.stdout.write(f"Demo borough: {len(orgs)} organisations, {len(demo.USERS)} users.")
        if password is not None:
            self.stdout.write("Demo sign-ins (development only):")
            for spec in demo.USERS:
                self.stdout.write(
                    f"  {spec.username:<18} {spec.role.label} at {orgs[spec.ods_code].name}"
                )
            self.stdout.write(f"  password for all: {password}")
