#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharedrecord.settings")
    # In a developer's checkout, after `make run` or `make test` made one, use the
    # generated development key. Deployments set SECRET_KEY(_FILE); images never
    # contain .data/ (.dockerignore), so this never applies there.
    dev_key = Path(__file__).resolve().parent / ".data" / "dev-secret-key"
    if (
        not os.environ.get("SECRET_KEY")
        and not os.environ.get("SECRET_KEY_FILE")
        and dev_key.exists()
    ):
        os.environ["SECRET_KEY_FILE"] = str(dev_key)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
