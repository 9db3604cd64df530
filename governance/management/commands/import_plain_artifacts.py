"""``manage.py import_plain_artifacts [--remove-plain]``: after switching a deployment from plain
files to the managed artifact store (keys and/or an object store, issue 12), store and record the
artifacts written before (``governance.storage.store.import_plain_artifacts``); until then their
reads are refused as having no record. Safe to run again: recorded artifacts are skipped."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.storage.store import import_plain_artifacts


class Command(BaseCommand):
    help = "Store and record the artifacts written in direct mode (plain files) in the managed store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--remove-plain",
            action="store_true",
            help="delete each plain file once stored in another backend (S3); in place otherwise",
        )

    def handle(self, *args, remove_plain: bool, **options) -> None:
        try:
            counts = import_plain_artifacts(remove_plain=remove_plain)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"imported {counts['imported']}, already recorded {counts['already']}, failed {counts['failed']}"
        )
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} artifact(s) were not imported; see the log")
