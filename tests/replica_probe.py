"""Run by tests/sharedrecord/test_replica.py in a process of its own, against a private
primary and its streaming replica (DATABASE_URL, DATABASE_REPLICA_URL): builds a record,
writes to it, or reads it as a GP, printing one JSON object.

    python -m tests.replica_probe setup
    python -m tests.replica_probe view PATIENT_ID SESSION_KEY
    python -m tests.replica_probe fhir PATIENT_ID TOKEN
    python -m tests.replica_probe write NHS_NUMBER
"""

from __future__ import annotations

import json
import sys

import django


def main(argv: list[str]) -> dict[str, object]:
    django.setup()
    from django.conf import settings
    from django.test import Client

    from sharedrecord.models import Patient, User
    from tests.factories import (
        confirm_basis,
        fed_person,
        feed,
        make_credential,
        partner,
        shown_entries,
        small_bundle,
    )
    from tests.fhirapi import entry_ids, fhir_get, partner_token

    mode = argv[0]
    if mode == "setup":
        patient = fed_person(key="replica")
        gp = User.objects.create_user(
            "replica.gp", password="persona-password-123", organisation=partner("Z81001"),
            role="gp",
        )  # fmt: skip
        client = Client()
        client.force_login(gp)
        confirm_basis(client, patient)
        response = client.get(f"/record/{patient.public_id}/problems")
        token = partner_token(Client(), partner("ZAC01"))
        return {
            "token": token,
            "patient": str(patient.public_id),
            "nhs_number": patient.nhs_number,
            "session": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "status": response.status_code,
            "read_from": response.get("X-Read-From", "primary"),
        }
    if mode == "view":
        patient_id, session = argv[1], argv[2]
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = session
        response = client.get(f"/record/{patient_id}/problems")
        return {
            "status": response.status_code,
            "read_from": response.get("X-Read-From", "primary"),
            "shown": sorted(shown_entries(response)),
        }
    if mode == "fhir":
        patient_id, token = argv[1], argv[2]
        response = fhir_get(Client(), token, f"Patient/{patient_id}/$everything")
        return {
            "status": response.status_code,
            "read_from": response.get("X-Read-From", "primary"),
            "shown": sorted(entry_ids(response.json_body or {})),
        }
    if mode == "write":
        patient = Patient.objects.get(nhs_number=argv[1])
        credential, _ = make_credential(partner("ZAC01"))
        message = feed(credential, small_bundle(patient.nhs_number, key="replica-new"))
        return {"status": message.status}
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
