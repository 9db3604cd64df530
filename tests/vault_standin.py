"""A stand-in for HashiCorp Vault's transit engine, run as its own server process by the
storage tests (issue 12).

No Vault server can be installed on this machine (neither Debian's nor PyPI's packages carry
one), so Steward's real client, hvac, talks over HTTP to this process instead. It answers only
what Steward calls, in Vault's wire format (``/v1/<mount>/...``, ``X-Vault-Token``, ``{"data":
...}`` and ``{"errors": [...]}``): create a key (``derived`` keys only), read it, rotate it,
encrypt, decrypt and rewrap with a base64 ``context``. Ciphertexts are ``vault:v<N>:<base64>``;
each version's key is derived per context with HKDF-SHA256 (as Vault derives keys), and
AES-256-GCM does the rest. A wrong token is a 403, a ciphertext that does not authenticate a
400, as Vault answers.

    python tests/vault_standin.py PORT TOKEN
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEYS: dict[str, list[bytes]] = {}
ROUTE = re.compile(
    r"^/v1/(?P<mount>[\w-]+)/(?P<op>keys|encrypt|decrypt|rewrap)/(?P<name>[\w-]+)(?P<rotate>/rotate)?$"
)


def _derived(name: str, version: int, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(KEYS[name][version - 1])


def _seal(name: str, plaintext: bytes, context: bytes) -> str:
    version = len(KEYS[name])
    nonce = os.urandom(12)
    sealed = AESGCM(_derived(name, version, context)).encrypt(nonce, plaintext, None)
    return f"vault:v{version}:{base64.b64encode(nonce + sealed).decode()}"


def _open(name: str, ciphertext: str, context: bytes) -> bytes:
    match = re.fullmatch(r"vault:v(\d+):(.+)", ciphertext)
    if not match or not 0 < int(match[1]) <= len(KEYS[name]):
        raise ValueError("invalid ciphertext: no prefix or an unknown key version")
    raw = base64.b64decode(match[2])
    try:
        return AESGCM(_derived(name, int(match[1]), context)).decrypt(raw[:12], raw[12:], None)
    except InvalidTag:
        raise ValueError("cipher: message authentication failed") from None


class Handler(BaseHTTPRequestHandler):
    token = ""

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> re.Match | None:
        if self.headers.get("X-Vault-Token") != self.token:
            self._answer(403, {"errors": ["permission denied"]})
            return None
        match = ROUTE.match(self.path)
        if match is None or (match["op"] != "keys" and match["name"] not in KEYS):
            self._answer(404, {"errors": []})
            return None
        return match

    def do_GET(self) -> None:
        match = self._route()
        if match is None:
            return
        if match["name"] not in KEYS:
            self._answer(404, {"errors": []})
            return
        self._answer(
            200,
            {"data": {"name": match["name"], "derived": True, "latest_version": len(KEYS[match["name"]])}},
        )

    def do_POST(self) -> None:
        match = self._route()
        if match is None:
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        name = match["name"]
        if match["op"] == "keys":
            if match["rotate"]:
                KEYS[name].append(os.urandom(32))
            elif not body.get("derived"):
                self._answer(400, {"errors": ["this stand-in makes derived keys only"]})
                return
            else:
                KEYS.setdefault(name, [os.urandom(32)])
            self._answer(204)
            return
        context = base64.b64decode(body.get("context") or "")
        try:
            if match["op"] == "encrypt":
                data = {"ciphertext": _seal(name, base64.b64decode(body["plaintext"]), context)}
            elif match["op"] == "decrypt":
                data = {"plaintext": base64.b64encode(_open(name, body["ciphertext"], context)).decode()}
            else:
                data = {"ciphertext": _seal(name, _open(name, body["ciphertext"], context), context)}
        except (ValueError, KeyError) as exc:
            self._answer(400, {"errors": [str(exc)]})
            return
        self._answer(200, {"data": data})


if __name__ == "__main__":
    Handler.token = sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
