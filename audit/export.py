"""The offline audit file: JSONL with a header, every entry (its canonical bytes embedded verbatim) and every
signed checkpoint right after the entry it signs. Anyone with the published public key can check it with
``lifeguard audit verify --file FILE --public-key K``, without database access.

Line shapes::

    {"format":"lifeguard-audit/1","exported_at":...,"public_key":...,"key_id":...}
    {"kind":"entry","seq":N,"hash":"<sha256 hex>","entry":<canonical entry JSON>}
    {"kind":"checkpoint","seq":N,"head":...,"time":...,"key_id":...,"signature":...}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import (
    Checkpoint,
    EntryFormatError,
    StoredCheckpoint,
    StoredEntry,
    VerifyReport,
    key_id,
    public_key_b64,
    verify_chain,
)

FORMAT = "lifeguard-audit/1"
NOT_EXACT = "the line differs from the export format (a byte was changed)"
ENTRY_MARKER = ',"entry":'


class AuditFileError(RuntimeError):
    """The export file cannot be read or written. Operators: check the path."""


def _entry_line(seq: int | None, stored_hash: str | None, text: str | None) -> str:
    return f'{{"kind":"entry","seq":{seq},"hash":{json.dumps(stored_hash)}{ENTRY_MARKER}{text}}}'


def _checkpoint_line(checkpoint: Checkpoint) -> str:
    return json.dumps({"kind": "checkpoint", **checkpoint.to_json()}, separators=(",", ":"))


def write_export(items: Iterable[StoredEntry | StoredCheckpoint], out: IO[str], public_key: Ed25519PublicKey,
                 exported_at: datetime) -> tuple[int, int]:
    header = {"format": FORMAT, "exported_at": exported_at.isoformat(), "public_key": public_key_b64(public_key),
              "key_id": key_id(public_key)}
    out.write(json.dumps(header, separators=(",", ":")) + "\n")
    entries = checkpoints = 0
    for item in items:
        if isinstance(item, StoredEntry):
            out.write(_entry_line(item.seq, item.stored_hash, item.text) + "\n")
            entries += 1
        elif item.checkpoint is not None:
            out.write(_checkpoint_line(item.checkpoint) + "\n")
            checkpoints += 1
    return entries, checkpoints


def _parse_line(number: int, line: str) -> StoredEntry | StoredCheckpoint:
    where = f"line {number}"
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return StoredEntry(where, None, None, None, f"line is not JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return StoredEntry(where, None, None, None, "line is not a JSON object")
    kind = record.get("kind")
    raw_seq = record.get("seq")
    seq = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else None
    if kind == "checkpoint":
        try:
            fields = {k: record[k] for k in ("seq", "head", "time", "key_id", "signature")}
            if seq is None or not all(isinstance(fields[k], str) for k in ("head", "time", "key_id", "signature")):
                raise EntryFormatError("checkpoint fields have the wrong types")
            checkpoint = Checkpoint(seq, fields["head"], fields["time"], fields["key_id"], fields["signature"])
            if _checkpoint_line(checkpoint) != line:
                raise EntryFormatError(NOT_EXACT)
            return StoredCheckpoint(where, checkpoint)
        except (KeyError, EntryFormatError) as exc:
            return StoredCheckpoint(where, None, f"malformed checkpoint: {exc}")
    if kind != "entry":
        return StoredEntry(where, seq, None, None, f"unknown record kind {kind!r}")
    stored_hash = record.get("hash")
    if not isinstance(stored_hash, str):
        return StoredEntry(where, seq, None, None, "hash missing")
    # The entry's bytes exactly as written (not re-serialised), so any changed byte changes its hash.
    marker = line.find(ENTRY_MARKER)
    if marker < 0 or not line.endswith("}"):
        return StoredEntry(where, seq, None, stored_hash, "entry field missing")
    text = line[marker + len(ENTRY_MARKER):-1]
    if seq is None or _entry_line(seq, stored_hash, text) != line:
        return StoredEntry(where, seq, None, stored_hash, NOT_EXACT)
    return StoredEntry(where, seq, text, stored_hash)


def _lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per non-empty line; text None when the line is not UTF-8."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise AuditFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            stripped = raw.rstrip(b"\n")
            if not stripped:
                continue
            try:
                yield number, stripped.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None


def read_export(path: Path) -> tuple[str | None, Iterator[StoredEntry | StoredCheckpoint]]:
    """(header problem or None, the entries and checkpoints in file order)."""
    lines = _lines(path)
    first = next(lines, None)
    problem: str | None = None
    try:
        header = json.loads(first[1]) if first is not None and first[1] is not None else None
    except json.JSONDecodeError:
        header = None
    if first is None or first[0] != 1 or not isinstance(header, dict) or header.get("format") != FORMAT:
        problem = f"line 1: not a {FORMAT} file (header missing or changed)"

    def records() -> Iterator[StoredEntry | StoredCheckpoint]:
        if problem is not None and first is not None and first[1] is not None and first[1].startswith('{"kind"'):
            yield _parse_line(first[0], first[1])
        for number, line in lines:
            if line is None:
                yield StoredEntry(f"line {number}", None, None, None, "line is not UTF-8")
            else:
                yield _parse_line(number, line)

    return problem, records()


def verify_file(path: Path, public_key: Ed25519PublicKey) -> VerifyReport:
    """Check an export offline. The export ends with a checkpoint over its last entry, so an unsigned tail is
    a failure here (in the live database it is only a warning)."""
    problem, records = read_export(path)
    report = verify_chain(records, public_key, require_signed_head=True)
    if problem is not None:
        report.failures.insert(0, problem)
    return report
