"""ID token checks of single sign-on, with keys the tests generate (no provider needed)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from sharedrecord.sso.claims import RoleProfile, role_profile_selected, role_profiles_from
from sharedrecord.sso.provider import SsoError, id_token_verify

ISSUER = "https://identity.example.test"
CLIENT = "shared-care-record"
NONCE = "n-0S6_WzA2Mj"
KEY = RSAKey.generate_key(2048, parameters={"kid": "op-1"})
KEYS = KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "555000111", "iat": now, "exp": now + 300}
    claims["nonce"] = NONCE
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims: dict[str, Any], key: Any = KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "op-1"}, claims, key)


def _verify(token: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "keys": KEYS,
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        "leeway": 0,
    }
    arguments.update(overrides)
    return id_token_verify(id_token=token, **arguments)


def _code(token: str, **overrides: Any) -> str:
    with pytest.raises(SsoError) as refused:
        _verify(token, **overrides)
    return refused.value.code


def test_it_accepts_a_token_signed_by_the_provider_for_us() -> None:
    assert _verify(_token(_claims(acr="AAL3_ANY")))["acr"] == "AAL3_ANY"


def test_it_refuses_a_tampered_token() -> None:
    header, payload, signature = _token(_claims()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _code(f"{header}.{forged}.{signature}") == "id-token-signature"


def test_it_refuses_a_token_signed_with_another_key_under_the_providers_key_id() -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "op-1"})
    assert _code(_token(_claims(), key=stranger)) == "id-token-signature"


def test_it_refuses_an_unsigned_or_symmetric_token() -> None:
    secret = OctKey.import_key(b"0" * 32)
    assert _code(_token(_claims(), key=secret, alg="HS256")) == "id-token-signature"
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=").decode()
    assert _code(f"{header}.{body}.") == "id-token-signature"
    assert _code("not-a-token") == "id-token-signature"


def test_it_refuses_an_expired_token() -> None:
    past = int(time.time()) - 600
    assert _code(_token(_claims(iat=past - 300, exp=past))) == "id-token-expired"


def test_it_refuses_a_token_for_another_audience() -> None:
    assert _code(_token(_claims(aud="another-client"))) == "id-token-claims"


def test_it_refuses_a_token_from_another_issuer() -> None:
    assert _code(_token(_claims(iss="https://elsewhere.example.test"))) == "id-token-claims"


def test_it_refuses_a_token_with_another_nonce_or_none() -> None:
    assert _code(_token(_claims(nonce="replayed"))) == "id-token-claims"
    assert _code(_token(_claims(nonce=None))) == "id-token-claims"


def test_it_refuses_a_token_without_expiry_or_subject() -> None:
    assert _code(_token(_claims(exp=None))) == "id-token-claims"
    assert _code(_token(_claims(sub=None))) == "id-token-claims"


def test_it_refuses_several_audiences_unless_we_are_the_authorized_party() -> None:
    both = [CLIENT, "another-client"]
    assert _code(_token(_claims(aud=both, azp="another-client"))) == "id-token-claims"
    assert _verify(_token(_claims(aud=both, azp=CLIENT)))["sub"] == "555000111"


# ------------------------------------------------------------------ CIS2-shaped role claims

ROLES = [
    {"person_roleid": "1", "org_code": "zsso1", "role_code": "S8000:G8000:R8000",
     "activity_codes": ["B0264"]},
    {"person_roleid": "2", "org_code": "ZSSO2", "role_code": "S8000:G8000:R0260"},
    {"org_code": "ZSSO3", "role_code": "R8000"},  # no profile id: dropped
    {"person_roleid": "4", "role_code": "R8000"},  # no organisation: dropped
    "not an entry",
    {"person_roleid": "1", "org_code": "ZSSO9", "role_code": "R8000"},  # the same id again
]  # fmt: skip


def test_it_reads_each_well_formed_role_profile_once() -> None:
    profiles = role_profiles_from({"nhsid_nrbac_roles": ROLES})
    assert profiles == [
        RoleProfile("1", "ZSSO1", "S8000:G8000:R8000", "", ("B0264",)),
        RoleProfile("2", "ZSSO2", "S8000:G8000:R0260"),
    ]
    assert role_profiles_from({"nhsid_nrbac_roles": "R8000"}) == []
    assert role_profiles_from({}) == []


def test_it_takes_the_selected_role_only_when_it_is_one_of_the_users() -> None:
    profiles = role_profiles_from({"nhsid_nrbac_roles": ROLES})
    assert role_profile_selected(profiles, {"selected_roleid": "2"}) == profiles[1]
    assert role_profile_selected(profiles, {"selected_roleid": "3"}) is None
    assert role_profile_selected(profiles, {}) is None
