"""Seal every kept credential again under the first of SEALING_KEYS (sharedrecord/sealing.py)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from sharedrecord.sealing import credentials_reseal, new_key


class Command(BaseCommand):
    help = (
        "Seal subscription and SMART client secrets again under the first of SEALING_KEYS "
        "(after putting a new key first); --new-key prints a new key and changes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--new-key", action="store_true", help="Print a new sealing key.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["new_key"]:
            self.stdout.write(new_key())
            return
        for field, n in credentials_reseal().items():
            self.stdout.write(f"{field}: {n} sealed again")
