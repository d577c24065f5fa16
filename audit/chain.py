"""The audit entry format and its verification, independent of where entries are stored.

An entry is the RFC 8785 canonical JSON of ``{seq, time, actor, action, subject, payload_hash, versions,
prev}``; ``prev`` is the SHA-256 (hex) of the previous entry's canonical bytes, ``GENESIS`` for the first one.
Entries hold no personal data: actors are keyed pseudonyms, payloads (decision records, notes, message text)
are referenced by their hash only, so purging a payload never breaks the chain.

A checkpoint signs ``{seq, head, time, key_id}`` (canonical JSON) with Ed25519: whoever holds the public key
can check that the chain up to ``seq`` ended in ``head`` when it was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS = "0" * 64
SYSTEM_ACTOR = "system"
ENTRY_FIELDS = ("action", "actor", "payload_hash", "prev", "seq", "subject", "time", "versions")


def canonical(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON. A value of ASCII keys, safe integers and floats that ECMAScript prints as
    Python does (the audit's own records) goes through the standard library's C encoder, whose output is then
    the same bytes; anything else goes through the ``rfc8785`` reference implementation (which also rejects
    what JCS cannot encode). ``tests/audit/test_canonical.py`` checks the two agree."""
    plain = _jcs_plain(value)
    if plain is not _NOT_PLAIN:
        try:
            return json.dumps(plain, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference implementation name the problem
            pass
    return rfc8785.dumps(value)


_NOT_PLAIN = object()
_SAFE_INTEGER = 2**53 - 1


def _jcs_plain(value: Any) -> Any:
    """``value`` with integral floats as ints (JCS prints ``1.0`` as ``1``), or ``_NOT_PLAIN`` when the standard
    encoder would not print JCS: non-ASCII keys (JCS sorts by UTF-16 code units), unsafe integers, floats printed
    with an exponent or not finite, types other than the JSON ones."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_SAFE_INTEGER <= value <= _SAFE_INTEGER else _NOT_PLAIN
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            return _NOT_PLAIN
        if value.is_integer():  # exact digits up to 2**53; beyond, ECMAScript prints shortest digits then zeros
            return int(value) if abs(value) <= _SAFE_INTEGER else _NOT_PLAIN
        return _NOT_PLAIN if "e" in repr(value) else value
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return _NOT_PLAIN
            plain = _jcs_plain(item)
            if plain is _NOT_PLAIN:
                return _NOT_PLAIN
            out[key] = plain
        return out
    if kind is list or kind is tuple:
        items = []
        for item in value:
            plain = _jcs_plain(item)
            if plain is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(plain)
        return items
    return _NOT_PLAIN


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload_hash(payload: Any) -> str:
    """Hash of a payload's canonical JSON; what an entry keeps instead of the payload itself."""
    return sha256_hex(canonical(payload))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: str
    actor: str
    action: str
    subject: str
    payload_hash: str | None
    versions: Mapping[str, Any]
    prev: str

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "actor": self.actor, "action": self.action,
                "subject": self.subject, "payload_hash": self.payload_hash, "versions": dict(self.versions),
                "prev": self.prev}

    def canonical(self) -> bytes:
        return canonical(self.body())

    def digest(self) -> str:
        return sha256_hex(self.canonical())

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AuditEntry:
        """Strict parse: exactly the entry fields with their types, else ``EntryFormatError``."""
        if sorted(body) != sorted(ENTRY_FIELDS):
            raise EntryFormatError(f"fields are {sorted(body)}, expected {sorted(ENTRY_FIELDS)}")
        seq, versions, digest = body["seq"], body["versions"], body["payload_hash"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise EntryFormatError("seq must be a positive integer")
        for name in ("time", "actor", "action", "subject", "prev"):
            if not isinstance(body[name], str):
                raise EntryFormatError(f"{name} must be a string")
        if not isinstance(versions, dict):
            raise EntryFormatError("versions must be an object")
        if digest is not None and not isinstance(digest, str):
            raise EntryFormatError("payload_hash must be a string or null")
        return cls(seq, body["time"], body["actor"], body["action"], body["subject"], digest, versions,
                   body["prev"])


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    head: str
    time: str
    key_id: str
    signature: str  # base64 Ed25519 signature of signed_bytes()

    def signed_body(self) -> dict[str, Any]:
        return {"seq": self.seq, "head": self.head, "time": self.time, "key_id": self.key_id}

    def signed_bytes(self) -> bytes:
        return canonical(self.signed_body())

    def to_json(self) -> dict[str, Any]:
        return {**self.signed_body(), "signature": self.signature}

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, *, seq: int, head: str, time: str) -> Checkpoint:
        unsigned = cls(seq, head, time, key_id(key.public_key()), "")
        signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
        return cls(seq, head, time, unsigned.key_id, signature)

    def signature_valid(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


class EntryFormatError(ValueError):
    """An audit entry or checkpoint does not have the documented shape."""


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key_bytes(key)).decode()


def key_id(key: Ed25519PublicKey) -> str:
    return sha256_hex(public_key_bytes(key))[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as published: base64 of the 32 raw bytes, or a PEM ``PUBLIC KEY`` block."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = text.strip()
    if text.startswith("-----BEGIN"):
        loaded = load_pem_public_key(text.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise EntryFormatError("the PEM key is not an Ed25519 public key")
        return loaded
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise EntryFormatError("public key is neither base64 nor PEM") from None
    if len(raw) != 32:
        raise EntryFormatError(f"an Ed25519 public key has 32 bytes, this one has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry as read back from a store: where it is (for messages), its text and the hash stored beside it."""

    location: str  # e.g. "seq 12" or "line 13"
    seq: int | None  # as the container says (row key, export wrapper); None when unreadable
    text: str | None  # the entry's JSON; None when the container could not be parsed
    stored_hash: str | None
    problem: str | None = None  # a container-level problem found while reading (e.g. broken JSON line)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    location: str
    checkpoint: Checkpoint | None
    problem: str | None = None


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    last_signed_seq: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> str | None:
        return self.failures[0] if self.failures else None

    def summary(self) -> str:
        state = "OK" if self.ok else "FAILED"
        return (f"{state}: {self.entries} entries, head seq {self.head_seq}, {self.checkpoints} signed "
                f"checkpoints (last at seq {self.last_signed_seq})")


def _check_entry(item: StoredEntry, expected_seq: int, prev: str | None) -> tuple[str | None, str | None]:
    """(problem, recomputed hash) for one entry; the hash is None when the entry is unreadable."""
    if item.problem is not None:
        return item.problem, None
    if item.text is None:
        return "entry missing", None
    try:
        body = json.loads(item.text)
        if not isinstance(body, dict):
            return "entry is not a JSON object", None
        entry = AuditEntry.from_body(body)
    except (json.JSONDecodeError, EntryFormatError) as exc:
        return f"entry unreadable: {exc}", None
    digest = entry.digest()
    if entry.canonical().decode() != item.text:
        return "entry is not in canonical form (its bytes were changed)", digest
    if item.seq is not None and item.seq != entry.seq:
        return f"stored under seq {item.seq} but the entry says seq {entry.seq}", digest
    if entry.seq != expected_seq:
        return f"sequence gap: expected seq {expected_seq}, found {entry.seq}", digest
    if item.stored_hash != digest:
        return f"hash mismatch: stored {item.stored_hash}, recomputed {digest}", digest
    if prev is not None and entry.prev != prev:
        return (f"chain broken: prev is {entry.prev} but entry seq {expected_seq - 1} hashes to {prev}"
                " (this entry or the previous one was altered)"), digest
    return None, digest


def verify_chain(
    items: Iterable[StoredEntry | StoredCheckpoint],
    public_key: Ed25519PublicKey,
    *,
    require_signed_head: bool = False,
) -> VerifyReport:
    """Walk entries and checkpoints in order. Every failure names its entry; the first one is what broke.

    After the first broken entry the chain continues from the hash *stored* for it, so one changed byte is
    reported once (at the entry that holds it), not again for every later entry."""
    report = VerifyReport()
    prev: str | None = GENESIS  # None after an unreadable entry: its hash is unknown
    expected = 1
    hashes: dict[int, str] = {}
    expected_key = key_id(public_key)
    for item in items:
        if isinstance(item, StoredCheckpoint):
            _check_checkpoint(item, public_key, expected_key, hashes, report)
            continue
        report.entries += 1
        problem, digest = _check_entry(item, expected, prev)
        seq = item.seq if item.seq is not None else expected
        if problem is not None:
            report.failures.append(f"entry seq {seq} ({item.location}): {problem}")
        chained = item.stored_hash or digest
        if chained is not None:
            hashes[seq] = chained
            report.head_hash = chained
        prev = chained
        report.head_seq = seq
        expected = seq + 1
    if report.head_seq > report.last_signed_seq:
        message = (f"entries {report.last_signed_seq + 1}..{report.head_seq} are not yet covered by a signed "
                   "checkpoint")
        (report.failures if require_signed_head else report.warnings).append(message)
    return report


def _check_checkpoint(item: StoredCheckpoint, public_key: Ed25519PublicKey, expected_key: str,
                      hashes: Mapping[int, str], report: VerifyReport) -> None:
    cp = item.checkpoint
    if cp is None:
        report.failures.append(f"checkpoint ({item.location}): {item.problem or 'unreadable'}")
        return
    where = f"checkpoint at seq {cp.seq} ({item.location})"
    if cp.key_id != expected_key:
        report.failures.append(f"{where}: signed by key {cp.key_id}, expected {expected_key}")
        return
    if not cp.signature_valid(public_key):
        report.failures.append(f"{where}: signature invalid")
        return
    if cp.seq not in hashes:
        report.failures.append(f"{where}: covers an entry that is not present before it")
        return
    if hashes[cp.seq] != cp.head:
        report.failures.append(f"{where}: signed head {cp.head} but the entries hash to {hashes[cp.seq]}")
        return
    report.checkpoints += 1
    report.last_signed_seq = max(report.last_signed_seq, cp.seq)
