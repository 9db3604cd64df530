"""Key-encryption in HashiCorp Vault's transit engine (issue 12): the KEK never leaves Vault.

Vault wraps and unwraps each artifact's data key (``transit/encrypt``, ``transit/decrypt``); the
key must be created with ``derived=true`` so that the artifact's binding (its storage key and
sha256) is the derivation context: a wrapped key moved to another artifact does not unwrap.
Rotating the KEK is Vault's (``transit/keys/<name>/rotate``); ``rewrap`` then moves each wrapped
data key to the newest key version (``transit/rewrap``) without Steward ever seeing it. Talks to
Vault through hvac, the maintained Python client; ``VAULT_ADDR`` and ``VAULT_TOKEN`` as Vault's
own CLI reads them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from governance.storage.envelope import EnvelopeError, KeyringError, KeyServiceError

# How long the key's newest version is trusted before asking Vault again (a rotation run asks
# once per this many seconds, not once per record).
_VERSION_TTL_S = 5.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _version(wrapped: bytes) -> int:
    """The key version of a transit ciphertext ``vault:v<N>:...`` (0 when it is not one)."""
    prefix = wrapped.split(b":", 2)
    if len(prefix) == 3 and prefix[0] == b"vault" and prefix[1][:1] == b"v" and prefix[1][1:].isdigit():
        return int(prefix[1][1:])
    return 0


class VaultTransit:
    """The KEK provider of ``governance.storage`` when ``STEWARD_ARTIFACT_VAULT_KEY`` names a
    transit key: same methods as ``envelope.Keyring`` (``active``, ``wrap``, ``unwrap``,
    ``needs_rewrap``, ``rewrap``). KeyServiceError when Vault does not answer or refuses (a
    wrong token, a missing key); KeyringError for a data key wrapped by another provider."""

    def __init__(
        self, key_name: str, mount_point: str, url: str, token: str, timeout_s: float = 10.0
    ) -> None:
        import hvac

        self.key_name = key_name
        self.mount_point = mount_point
        self.url = url
        self.active = f"vault:{key_name}"
        self.client = hvac.Client(url=url, token=token, timeout=timeout_s)
        self._latest: tuple[float, int] | None = None

    def _call(
        self, what: str, call: Callable[[Any], dict[str, Any]], passing: tuple[type[Exception], ...] = ()
    ) -> dict[str, Any]:
        """``call(transit)``; Vault's and the network's errors as KeyServiceError naming ``what``,
        except those in ``passing`` (the caller's to interpret)."""
        import hvac.exceptions
        import requests

        try:
            return call(self.client.secrets.transit)
        except passing:
            raise
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            kind = type(exc).__name__
            detail = str(exc).strip()[:200] or kind
            raise KeyServiceError(
                f"Vault at {self.url} refused or did not answer {what} ({kind}: {detail})"
            ) from None

    def wrap(self, data_key: bytes, binding: bytes) -> tuple[str, bytes]:
        """``(kek id, "vault:vN:..." ciphertext)`` of ``data_key``, bound to ``binding``."""
        answer = self._call(
            f"transit/encrypt/{self.key_name}",
            lambda transit: transit.encrypt_data(
                name=self.key_name,
                plaintext=_b64(data_key),
                context=_b64(binding),
                mount_point=self.mount_point,
            ),
        )
        return self.active, answer["data"]["ciphertext"].encode()

    def unwrap(self, kek_id: str, wrapped: bytes, binding: bytes) -> bytes:
        """The data key Vault unwraps from ``wrapped`` for ``binding``. EnvelopeError when Vault
        finds it does not authenticate (edited, or moved from another artifact: a 400)."""
        import hvac.exceptions

        self._ours(kek_id)
        try:
            answer = self._call(
                f"transit/decrypt/{self.key_name}",
                lambda transit: transit.decrypt_data(
                    name=self.key_name,
                    ciphertext=wrapped.decode(errors="replace"),
                    context=_b64(binding),
                    mount_point=self.mount_point,
                ),
                passing=(hvac.exceptions.InvalidRequest,),
            )
        except hvac.exceptions.InvalidRequest as exc:
            detail = str(exc).strip()[:200]
            raise EnvelopeError(f"its wrapped data key does not unwrap in Vault ({detail})") from None
        return base64.b64decode(answer["data"]["plaintext"])

    def needs_rewrap(self, kek_id: str, wrapped: bytes) -> bool:
        """Whether ``wrapped`` is under an older version of the transit key than the newest."""
        return kek_id != self.active or _version(wrapped) < self.latest_version()

    def rewrap(self, kek_id: str, wrapped: bytes, binding: bytes) -> tuple[str, bytes]:
        """``wrapped`` moved to the key's newest version by Vault (the data key never leaves it)."""
        self._ours(kek_id)
        answer = self._call(
            f"transit/rewrap/{self.key_name}",
            lambda transit: transit.rewrap_data(
                name=self.key_name,
                ciphertext=wrapped.decode(),
                context=_b64(binding),
                mount_point=self.mount_point,
            ),
        )
        return self.active, answer["data"]["ciphertext"].encode()

    def latest_version(self) -> int:
        """The transit key's newest version (asked again after a few seconds)."""
        now = time.monotonic()
        if self._latest is None or now - self._latest[0] > _VERSION_TTL_S:
            answer = self._call(
                f"transit/keys/{self.key_name}",
                lambda transit: transit.read_key(name=self.key_name, mount_point=self.mount_point),
            )
            self._latest = (now, int(answer["data"]["latest_version"]))
        return self._latest[1]

    def _ours(self, kek_id: str) -> None:
        if kek_id != self.active:
            raise KeyringError(
                f"its data key is wrapped by {kek_id!r}, but the configured key-encryption key "
                f"is {self.active!r}"
            )
