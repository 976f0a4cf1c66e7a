"""Configure an organisation's pull source (a FHIR R4 endpoint asked live when a record opens)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sharedrecord.models import Organisation, PullAuth, PullMode, PullSearch
from sharedrecord.pullsources import pull_source_register


class Command(BaseCommand):
    help = (
        "Create or update an organisation's pull source: its FHIR R4 base URL, OAuth2 client "
        "credentials (a client secret or a private-key JWT, held in the environment variable "
        "named by --secret-name, never in the database), what to ask and how long to wait."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="the organisation's ODS code")
        parser.add_argument("--base-url", required=True, help="FHIR R4 base URL")
        parser.add_argument("--token-url", required=True, help="OAuth2 token endpoint")
        parser.add_argument("--client-id", required=True)
        parser.add_argument(
            "--secret-name", required=True,
            help="environment variable holding the client secret or PEM key (or NAME_FILE)",
        )  # fmt: skip
        parser.add_argument("--auth", default=PullAuth.CLIENT_SECRET, choices=PullAuth.values)
        parser.add_argument("--key-id", default="", help="private-key JWT: the key's kid")
        parser.add_argument("--scope", default="system/*.read")
        parser.add_argument("--search", default=PullSearch.EVERYTHING, choices=PullSearch.values)
        parser.add_argument(
            "--types", default="",
            help="comma-separated resource types (default: allergies, problems, medications, results)",  # noqa: E501
        )  # fmt: skip
        parser.add_argument("--timeout", default="3", help="seconds, 0.1 to 30")
        parser.add_argument("--mode", default=PullMode.BOTH, choices=PullMode.values)
        parser.add_argument("--inactive", action="store_true", help="configured but not asked")

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = Organisation.objects.filter(ods_code=options["org"].upper()).first()
        if organisation is None:
            raise CommandError(f"No organisation with ODS code {options['org']}.")
        try:
            timeout = Decimal(options["timeout"])
        except InvalidOperation as exc:
            raise CommandError("--timeout must be a number of seconds.") from exc
        types = [t.strip() for t in options["types"].split(",") if t.strip()] or None
        try:
            source = pull_source_register(
                organisation=organisation,
                base_url=options["base_url"],
                token_url=options["token_url"],
                client_id=options["client_id"],
                secret_name=options["secret_name"],
                auth=options["auth"],
                key_id=options["key_id"],
                scope=options["scope"],
                search=options["search"],
                resource_types=types,
                timeout_seconds=timeout,
                mode=options["mode"],
                active=not options["inactive"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"pull_source={source.public_id} mode={source.mode}")
