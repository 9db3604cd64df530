"""``manage.py rotate_artifact_keys``: re-wrap every artifact's data key under the active
key-encryption key (issue 12), without re-encrypting any data (``governance.storage.rewrap_all``).

Rotation, step by step (docs/operations.md): put a new key first in the keyring
(``STEWARD_ARTIFACT_KEYS_FILE``), keeping the old one after it; run this; once it reports
nothing left under the old key, remove the old key from the keyring. Each batch is audited
(``artifact_keys.rewrap``). ``--new-key ID`` prints a fresh keyring entry to add.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance import storage
from governance.storage.envelope import Keyring, KeyringError, KeyServiceError


class Command(BaseCommand):
    help = "Re-wrap every stored artifact's data key under the active key-encryption key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--new-key", metavar="ID", help="only print a fresh keyring entry id:base64key")
        parser.add_argument("--batch", type=int, default=500, help="records per transaction (default 500)")

    def handle(self, *args, new_key: str | None, batch: int, **options) -> None:
        if new_key:
            self.stdout.write(Keyring.new_entry(new_key))
            return
        if batch < 1:
            raise CommandError("--batch is at least 1")
        try:
            counts = storage.rewrap_all(batch=batch)
        except (KeyringError, KeyServiceError, storage.ArtifactUnreadable, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        ring = storage.keyring()
        assert ring is not None  # rewrap_all refused otherwise
        moved = ", ".join(f"{count} from {kek_id}" for kek_id, count in sorted(counts.items())) or "none"
        self.stdout.write(f"re-wrapped data keys under {ring.active}: {moved}")
