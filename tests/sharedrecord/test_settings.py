"""Settings come from the environment only, and production values pass check --deploy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from sharedrecord.env import env_bool, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "sharedrecord.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, cwd=BASE_DIR, capture_output=True, text=True
    )


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=clean,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
    )


PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "record.borough.example",
    "CSRF_TRUSTED_ORIGINS": "https://record.borough.example",
    "DATABASE_URL": os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/x"),
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "true",
    "SEALING_KEYS": Fernet.generate_key().decode(),
}


def test_settings_load_from_the_environment_alone() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['NAME'], s.DEBUG, s.REDIS_URL, s.ALLOWED_HOSTS)"
    )
    result = _run(
        code,
        {
            "SECRET_KEY": "k" * 50,
            "DATABASE_URL": "postgresql://app@db.internal:5432/records",
            "REDIS_URL": "redis://cache.internal:6379/2",
            "ALLOWED_HOSTS": "a.example,b.example",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "records",
        "False",
        "redis://cache.internal:6379/2",
        "['a.example',",
        "'b.example']",
    ]


def test_it_refuses_to_start_without_a_secret_key() -> None:
    result = _run("import django; django.setup()", {})
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY (or SECRET_KEY_FILE)" in result.stderr


def test_it_refuses_a_database_that_is_not_postgresql() -> None:
    result = _run(
        "import django; django.setup()",
        {"SECRET_KEY": "k" * 50, "DATABASE_URL": "sqlite:///tmp/x.db"},
    )
    assert result.returncode != 0
    assert "DATABASE_URL must name a PostgreSQL database" in result.stderr


def test_check_deploy_is_clean_with_production_values() -> None:
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_warns_when_debug_is_on_in_production() -> None:
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"], {**PRODUCTION_ENV, "DEBUG": "true"}
    )
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout


def test_check_deploy_warns_when_passwords_need_no_second_factor_in_production() -> None:
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {**PRODUCTION_ENV, "SIGN_IN_OTP_REQUIRED": "false"},
    )
    assert result.returncode != 0
    assert "sharedrecord.W001" in result.stderr + result.stdout
    assert "password and no second factor" in result.stderr + result.stdout
    single_sign_on_only = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {**PRODUCTION_ENV, "SIGN_IN_OTP_REQUIRED": "false", "SIGN_IN_PASSWORDS": "false"},
    )
    assert single_sign_on_only.returncode == 0, single_sign_on_only.stdout


def test_check_deploy_warns_when_sealed_credentials_hang_on_the_secret_key() -> None:
    unsealed = {k: v for k, v in PRODUCTION_ENV.items() if k != "SEALING_KEYS"}
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], unsealed)
    assert result.returncode != 0
    assert "sharedrecord.W002" in result.stderr + result.stdout


def test_env_bool_accepts_only_true_and_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "true")
    assert env_bool("FLAG", default=False) is True
    monkeypatch.setenv("FLAG", "false")
    assert env_bool("FLAG", default=True) is False
    monkeypatch.setenv("FLAG", "yes")
    with pytest.raises(ImproperlyConfigured, match="must be 'true' or 'false'"):
        env_bool("FLAG", default=False)
    monkeypatch.delenv("FLAG")
    assert env_bool("FLAG", default=True) is True


def test_env_secret_prefers_the_mounted_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("TOKEN", "from-env")
    monkeypatch.setenv("TOKEN_FILE", str(secret_file))
    assert env_secret("TOKEN") == "from-file"
    monkeypatch.delenv("TOKEN_FILE")
    assert env_secret("TOKEN") == "from-env"
    monkeypatch.delenv("TOKEN")
    with pytest.raises(ImproperlyConfigured):
        env_secret("TOKEN")


def test_env_str_and_list_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAME_NOT_SET", raising=False)
    with pytest.raises(ImproperlyConfigured):
        env_str("NAME_NOT_SET")
    assert env_str("NAME_NOT_SET", "fallback") == "fallback"
    monkeypatch.setenv("HOSTS", " a , ,b ")
    assert env_list("HOSTS") == ["a", "b"]
