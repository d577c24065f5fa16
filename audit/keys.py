"""The audit signing key (Ed25519) and the pseudonym key (HMAC), from settings or generated once under data_dir.

Production sets ``LIFEGUARD_AUDIT_SIGNING_KEY`` and ``LIFEGUARD_PSEUDONYM_KEY`` so every process (API, workers)
signs with the same key and derives the same pseudonyms. The embedded default generates each key once, on
first use, into a 0600 file under ``data_dir``; several processes starting at once agree on one file because
it is created with an atomic link.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from audit.chain import SYSTEM_ACTOR
from pipeline.settings import Settings

SIGNING_KEY_FILE = "audit-signing.key"
PSEUDONYM_KEY_FILE = "pseudonym.key"


class AuditKeyError(RuntimeError):
    """A configured key is malformed or the key file cannot be read or created. Operators: check
    LIFEGUARD_AUDIT_SIGNING_KEY / LIFEGUARD_PSEUDONYM_KEY or the permissions of data_dir."""


def _read_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """Read ``path``, or create it with ``generate()`` if absent. Creation is write-to-temp then ``os.link``,
    which fails if another process created the file first; then that file is read."""
    try:
        if path.exists():
            return path.read_bytes().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, generate() + b"\n")
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return path.read_bytes().strip()
    except OSError as exc:
        raise AuditKeyError(f"cannot read or create key file {path}: {exc.strerror or exc}") from None


def _decode(value: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuditKeyError(f"{what} is not valid base64") from None


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.audit_signing_key is not None:
        seed = _decode(settings.audit_signing_key, "LIFEGUARD_AUDIT_SIGNING_KEY")
    else:
        path = settings.data_dir / SIGNING_KEY_FILE
        seed = _decode(_read_or_create(path, lambda: base64.b64encode(secrets.token_bytes(32))), str(path))
    if len(seed) != 32:
        raise AuditKeyError(f"the audit signing key must be a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def new_signing_key_b64() -> str:
    """A fresh base64 seed, for operators setting LIFEGUARD_AUDIT_SIGNING_KEY."""
    key = Ed25519PrivateKey.generate()
    return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()


def load_pseudonym_key(settings: Settings) -> bytes:
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.encode()
    else:
        key = _read_or_create(settings.data_dir / PSEUDONYM_KEY_FILE,
                              lambda: base64.b64encode(secrets.token_bytes(32)))
    if len(key) < 16:
        raise AuditKeyError("the pseudonym key must have at least 16 bytes")
    return key


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """Keyed pseudonyms (HMAC-SHA256) for people in audit entries: stable per person, not reversible without
    the key, and meaningless once the key is destroyed."""

    key: bytes

    def __call__(self, actor_id: str | None) -> str:
        if actor_id is None:
            return SYSTEM_ACTOR
        digest = hmac.new(self.key, actor_id.encode(), hashlib.sha256).hexdigest()
        return f"ps:{digest[:32]}"
