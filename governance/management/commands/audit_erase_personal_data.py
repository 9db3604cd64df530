"""``manage.py audit_erase_personal_data USERNAME --actor ADMIN``: erase a person from the audit
log's personal details without breaking its Merkle tree (``audit.erasure.do_erase_personal_data``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.erasure import do_erase_personal_data


class Command(BaseCommand):
    help = "Redact a user's name and e-mail from audit events and delete those events' salts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the person whose details are erased")
        parser.add_argument("--actor", required=True, help="the platform admin doing it (audited)")

    def handle(self, *args, username: str, actor: str, **options) -> None:
        users = get_user_model().objects
        try:
            subject, admin = users.get_by_natural_key(username), users.get_by_natural_key(actor)
        except users.model.DoesNotExist as exc:
            raise CommandError(f"no such user: {exc}") from exc
        try:
            count = do_erase_personal_data(subject, actor=admin)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"erased {username}'s details from {count} audit events")
