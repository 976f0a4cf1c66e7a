"""Register an application with the FHIR read API and print its client secret once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sharedrecord.clients import GRANTS, api_client_register
from sharedrecord.models import CLINICAL_ROLES, Organisation


class Command(BaseCommand):
    help = (
        "Register a FHIR read API client: a partner system (client-credentials, reading as "
        "its organisation with one clinical role) or a staff-facing application "
        "(authorization-code). The secret is printed once; only its hash is kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the application's name")
        parser.add_argument("--grant", required=True, choices=GRANTS)
        parser.add_argument("--org", default="", help="partner system: its ODS code")
        parser.add_argument(
            "--role", default="", choices=["", *sorted(CLINICAL_ROLES)],
            help="partner system: the role it reads with",
        )  # fmt: skip
        parser.add_argument(
            "--redirect-uri", action="append", default=[],
            help="staff application: an exact redirect URI (repeat for more)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = None
        if options["org"]:
            organisation = Organisation.objects.filter(ods_code=options["org"].upper()).first()
            if organisation is None:
                raise CommandError(f"No organisation with ODS code {options['org']}.")
        try:
            issued = api_client_register(
                name=options["name"],
                grant=options["grant"],
                organisation=organisation,
                role=options["role"],
                redirect_uris=" ".join(options["redirect_uri"]),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stderr.write("Registered. Store the secret now; it cannot be shown again.")
        self.stdout.write(f"client_id={issued.client_id}")
        self.stdout.write(f"client_secret={issued.client_secret}")
