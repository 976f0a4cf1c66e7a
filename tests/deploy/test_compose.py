"""The compose file cannot run here (no Docker engine), so its structure is checked.

Every app service must start a command that exists and set only environment
names the settings actually read, including the required ones.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml
from django.core.management import get_commands

BASE_DIR = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((BASE_DIR / "deploy" / "compose.yaml").read_text())
APP_SERVICES = [
    "migrate", "grants", "web", "worker", "worker-large", "worker-background", "beat", "mllp",
    "audit-checkpoint",
]  # fmt: skip


def names_the_settings_read() -> set[str]:
    source = (BASE_DIR / "sharedrecord" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z0-9_]+)"', source))
    for secret in re.findall(r'env_secret\("([A-Z0-9_]+)"\)', source):
        names |= {secret, f"{secret}_FILE"}
    return names


def service(name: str) -> dict[str, Any]:
    return dict(COMPOSE["services"][name])


def test_every_app_service_sets_only_names_the_settings_read() -> None:
    known = names_the_settings_read()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY_FILE", "ALLOWED_HOSTS"} <= known
    for name in APP_SERVICES:
        env = service(name)["environment"]
        assert set(env) <= known, (name, set(env) - known)
        assert {"DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"} <= set(env), name
        assert "SECRET_KEY_FILE" in env or "SECRET_KEY" in env, name
        assert env["DEBUG"] == "false", name


def test_every_app_service_runs_a_command_that_exists() -> None:
    for name in APP_SERVICES:
        command = service(name)["command"]
        program = command[0]
        if program == "gunicorn":
            module, _, attribute = command[1].partition(":")
            assert hasattr(importlib.import_module(module), attribute)
            config = command[command.index("--config") + 1]
            assert (BASE_DIR / config).is_file()
        elif program == "celery":
            app_module = command[command.index("-A") + 1]
            assert hasattr(importlib.import_module(app_module), "celery_app")
            assert command[3] in {"worker", "beat"}
        elif program == "python":
            assert command[1] == "manage.py"
            assert command[2] in get_commands()
        else:
            raise AssertionError(f"{name}: unexpected program {program}")


def test_the_image_copies_what_exists_and_the_broker_never_evicts() -> None:
    dockerfile = (BASE_DIR / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for part in source.split():
            assert (BASE_DIR / part).exists(), part
    redis_command = service("redis")["command"]
    assert redis_command[redis_command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--appendonly" in redis_command


def test_each_feed_queue_has_its_own_workers() -> None:
    def queues(name: str) -> str:
        command = service(name)["command"]
        return str(command[command.index("--queues") + 1])

    # The settings' defaults: CELERY_QUEUE, and FEED_LARGE_QUEUE after it.
    assert queues("worker") == "sharedrecord"
    assert queues("worker-large") == "sharedrecord-large"


def test_every_kind_of_work_has_a_worker() -> None:
    from sharedrecord.celery import platform_queues

    def queues(name: str) -> set[str]:
        command = service(name)["command"]
        return set(str(command[command.index("--queues") + 1]).split(","))

    taken = set().union(*(queues(name) for name in APP_SERVICES if "worker" in name))
    # The settings' defaults, with CELERY_QUEUE at its default.
    default = {kind: q.replace(platform_queues()["feeds"], "sharedrecord", 1)
               for kind, q in platform_queues().items()}  # fmt: skip
    assert set(default.values()) <= taken, set(default.values()) - taken


def test_the_web_service_takes_single_sign_on_and_launch_from_the_operators_environment() -> None:
    # The doors staff come through (#23) are configured per deployment, never baked in.
    env = service("web")["environment"]
    for name in (
        "OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET_FILE", "OIDC_CLIENT_PRIVATE_KEY_FILE",
        "OIDC_CLIENT_KEY_ID", "OIDC_ACR_VALUES", "RECORD_MIN_AAL", "SIGN_IN_PASSWORDS",
        "LAUNCH_AUDIENCE",
    ):  # fmt: skip
        assert env.get(name) == f"${{{name}:-}}", name
