"""What the FHIR read API says about itself: the CapabilityStatement and SMART configuration.

Both are public (FHIR and SMART discovery require it) and hold no personal
data; each says what the server does, and nothing it does not.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from sharedrecord.smart import SEARCHABLE_TYPES


def smart_configuration(root: str) -> dict[str, Any]:
    """SMART App Launch discovery: where to get a token and which scopes exist."""
    return {
        "authorization_endpoint": f"{root}/o/authorize/",
        "token_endpoint": f"{root}/o/token/",
        "revocation_endpoint": f"{root}/o/revoke_token/",
        "introspection_endpoint": f"{root}/o/introspect/",
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "scopes_supported": sorted(settings.OAUTH2_PROVIDER["SCOPES"]),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "client-confidential-symmetric",
            "permission-user",
            "permission-patient",
            "launch-ehr",
            "context-ehr-patient",
        ],
    }


def capability_statement(base: str) -> dict[str, Any]:
    """What the server does, and nothing it does not (read and search only)."""
    type_params = [
        ("patient", "reference", "The person (required)"),
        ("date", "date", "The clinical date (eq, ne, gt, ge, lt, le, sa, eb)"),
        ("category", "token", "Category code, optionally system|code"),
        ("code", "token", "Code, optionally system|code"),
        ("status", "token", "Status"),
        ("_lastUpdated", "date", "When the record last changed"),
        ("_count", "number", f"Page size, at most {settings.FHIR_PAGE_MAX}"),
        ("_total", "token", "none leaves the total out; estimate and accurate count it"),
    ]
    resources: list[dict[str, Any]] = [
        {
            "type": "Patient",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {
                    "name": "identifier",
                    "type": "token",
                    "documentation": "https://fhir.nhs.uk/Id/nhs-number|<NHS number>",
                },
                {"name": "family", "type": "string", "documentation": "With birthdate"},
                {"name": "birthdate", "type": "date", "documentation": "With family"},
                {"name": "gender", "type": "token"},
                {"name": "address-postalcode", "type": "string"},
            ],
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            ],
        }
    ]
    for resource_type in SEARCHABLE_TYPES:
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchRevInclude": ["Provenance:target"],
                "searchParam": [
                    {"name": n, "type": t, "documentation": d} for n, t, d in type_params
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.localdate().isoformat(),
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "implementation": {"description": "Shared care record: read API", "url": base},
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Send X-Purpose-Of-Use: TREAT (or ETREAT with "
                    "X-Break-Glass-Reason and X-Break-Glass-Justification) with every read."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth2 bearer tokens with SMART v1 scopes.",
                },
                "resource": resources,
            }
        ],
    }
