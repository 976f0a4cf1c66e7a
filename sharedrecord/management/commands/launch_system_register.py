"""Register a clinical system that opens the record in context (signed launch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sharedrecord.launch import launch_system_register
from sharedrecord.models import Organisation


class Command(BaseCommand):
    help = (
        "Register (or update) a system that sends clinicians to /launch with a signed JWT: "
        "its issuer (the tokens' iss), its public keys (a JWKS URL or a JWKS file) and, "
        "when it serves one organisation only, that organisation's ODS code."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="shown as 'Opened from <name>'")
        parser.add_argument("--issuer", required=True, help="the `iss` of its launch tokens")
        keys = parser.add_mutually_exclusive_group(required=True)
        keys.add_argument("--jwks-url", default="", help="where its public keys are published")
        keys.add_argument("--jwks-file", default="", help="a JSON file of its public keys")
        parser.add_argument("--org", default="", help="the one organisation it serves (ODS)")
        parser.add_argument(
            "--smart-fhir-base", default="",
            help="SMART EHR launch: the EHR's FHIR base URL (the iss of its launches)",
        )  # fmt: skip
        parser.add_argument("--client-id", default="", help="SMART EHR: our client id there")
        parser.add_argument(
            "--client-secret-file", default="", help="SMART EHR: a file holding our secret"
        )
        parser.add_argument(
            "--assurance-level", type=int, default=3, choices=[0, 1, 2, 3],
            help="how its users sign in (3: smartcard); a token's acr may only lower it",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        organisation = None
        if options["org"]:
            organisation = Organisation.objects.filter(ods_code=options["org"].upper()).first()
            if organisation is None:
                raise CommandError(f"No organisation with ODS code {options['org']}.")
        jwks = None
        if options["jwks_file"]:
            try:
                jwks = json.loads(Path(options["jwks_file"]).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError("The JWKS file cannot be read as JSON.") from exc
        secret = ""
        if options["client_secret_file"]:
            try:
                secret = Path(options["client_secret_file"]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError("The client secret file cannot be read.") from exc
        try:
            system = launch_system_register(
                name=options["name"], issuer=options["issuer"], jwks_url=options["jwks_url"],
                jwks=jwks, organisation=organisation, assurance_level=options["assurance_level"],
                smart_fhir_base=options["smart_fhir_base"], smart_client_id=options["client_id"],
                smart_client_secret=secret,
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"launch_system={system.public_id} issuer={system.issuer}")
