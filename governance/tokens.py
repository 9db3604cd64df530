"""API token secrets: how they are made, recognised and hashed. No Django here.

A secret is ``stw_`` followed by 32 random bytes in URL-safe base64 (256 bits from the OS's
CSPRNG, ``secrets.token_urlsafe``). Only its SHA-256 is stored. A plain, unsalted hash is
adequate for secrets of that entropy: password hashing (PBKDF2, Argon2) slows the guessing of
low-entropy human passwords, while guessing a 256-bit random secret is infeasible at any speed,
and a fast hash lets every request find its token by an indexed equality lookup.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets

SECRET_PREFIX = "stw_"  # noqa: S105 (a marker that makes leaked secrets greppable, not a secret)
SECRET_BYTES = 32
# The stored ``ApiToken.prefix``: enough of the secret to recognise it in a list, too little to use.
VISIBLE_CHARS = 12


def new_secret() -> str:
    """A fresh secret, e.g. ``stw_3q2ZkT...`` (47 characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of the secret's UTF-8 bytes (64 characters), as stored in ``ApiToken.key_hash``."""
    return hashlib.sha256(secret.encode()).hexdigest()


def visible_prefix(secret: str) -> str:
    """The first ``VISIBLE_CHARS`` characters, shown beside the token in lists."""
    return secret[:VISIBLE_CHARS]


def default_expiry() -> datetime.datetime:
    """When a new API token expires unless its creator says otherwise (``None`` for never):
    ``STEWARD_API_TOKEN_DAYS`` days from now (issue 14: tokens used to default to never)."""
    from django.conf import settings
    from django.utils import timezone

    return timezone.now() + datetime.timedelta(days=settings.STEWARD_API_TOKEN_DAYS)
