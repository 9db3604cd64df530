"""``manage.py audit_verify``: recompute the audit log's Merkle tree and check it end to end."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.verify import VERIFY_CHUNK, verify_audit_log


class Command(BaseCommand):
    # The system checks import every URL and view (torch, pandas...): seconds that an operator's
    # verification does not need.
    requires_system_checks = []
    help = (
        "Recompute every audit leaf from its event and check the leaves, the stored tree nodes and "
        "every signed checkpoint. Prints OK with counts, or names the first bad leaf index or the "
        "missing tail, and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            type=Path,
            metavar="PEM",
            help="an earlier signing key's public PEM, for checkpoints signed before a key rotation",
        )
        parser.add_argument("--chunk-size", type=int, default=VERIFY_CHUNK, help="rows per database fetch")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes hashing leaves on PostgreSQL (default: the CPU count, at most 8; 1 = none)",
        )

    def handle(self, *args, public_key: list[Path], chunk_size: int, workers: int | None, **options) -> None:
        started = time.perf_counter()
        try:
            pems = [path.read_text() for path in public_key]
            report = verify_audit_log(public_keys=pems, chunk_size=chunk_size, workers=workers)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot verify: {exc}") from exc
        *details, verdict = report.lines()
        for line in details:
            self.stdout.write(line)
        if not report.is_ok:
            raise CommandError(verdict)
        self.stdout.write(self.style.SUCCESS(f"{verdict} ({time.perf_counter() - started:.1f} s)"))
