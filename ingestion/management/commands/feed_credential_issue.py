"""Issue a feed credential for a partner system and print its token once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion.credentials import feed_credential_issue
from sharedrecord.models import Organisation


class Command(BaseCommand):
    help = "Issue a new feed token for a partner system (printed once; only its hash is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="the organisation's ODS code")
        parser.add_argument("--system", required=True, help="the sending system's name")

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = Organisation.objects.filter(ods_code=options["org"].upper()).first()
        if organisation is None:
            raise CommandError(f"No organisation with ODS code {options['org']}.")
        credential, token = feed_credential_issue(
            organisation=organisation, system=options["system"]
        )
        self.stderr.write(
            f"Issued {credential.system} for {organisation}. Store this token now; "
            "it cannot be shown again:"
        )
        self.stdout.write(token)
