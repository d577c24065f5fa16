"""Export folders: deterministic file writing, ``manifest.json``, and the audit entry that records each export.

Byte-identical re-exports: every JSON file is written with sorted keys and a fixed layout, CSVs with ``\\n`` line
ends, files are listed in path order, and nothing carries the wall clock. The manifest names the audit chain head
the export covers: the last entry that is not itself an export record, so exporting twice in a row (which
appends two export entries) covers the same head and yields the same manifest.

The audit entry (``export.<kind>``) commits to the manifest twice: its ``payload_hash`` is the hash of the
manifest's canonical JSON, and its ``versions.manifest_sha256`` is the SHA-256 of the manifest file's bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select

from audit.chain import GENESIS
from audit.log import PendingEntry
from audit.tables import audit_entries
from compliance.errors import OutputDirError
from review.store import SqlCaseStore

SCHEMA_VERSION = "lifeguard-export/1"
MANIFEST = "manifest.json"
ExportKind = Literal["dsa", "ncmec", "transparency"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ManifestFile(_Frozen):
    path: str
    sha256: str
    bytes: int
    rows: int | None = None


class ChainHead(_Frozen):
    seq: int
    hash: str


class Manifest(_Frozen):
    schema_version: str = SCHEMA_VERSION
    export: ExportKind
    parameters: dict[str, Any]
    platform: str
    pseudonym_key_id: str
    audit_chain_head: ChainHead
    row_counts: dict[str, int]
    files: list[ManifestFile]


def json_bytes(value: Any) -> bytes:
    """The one JSON layout of every export file: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def covered_head(conn: Connection) -> ChainHead:
    """The last audit entry that is not an export record (see the module docstring)."""
    row = conn.execute(select(audit_entries.c.seq, audit_entries.c.entry_hash)
                       .where(audit_entries.c.action.not_like("export.%"))
                       .order_by(audit_entries.c.seq.desc()).limit(1)).first()
    return ChainHead(seq=0, hash=GENESIS) if row is None else ChainHead(seq=int(row.seq), hash=str(row.entry_hash))


class ExportFolder:
    """Writes one export's files under ``root`` and then its manifest. A folder holding an earlier export of
    the same kind is replaced file by file (the files its manifest lists); any other content is refused."""

    def __init__(self, root: Path, kind: ExportKind) -> None:
        self.root = root
        self.kind = kind
        self._files: dict[str, ManifestFile] = {}
        self._prepare()

    def _prepare(self) -> None:
        try:
            if self.root.exists() and not self.root.is_dir():
                raise OutputDirError(f"{self.root} is a file, not a directory")
            self.root.mkdir(parents=True, exist_ok=True)
            previous = self.root / MANIFEST
            if previous.is_file():
                try:
                    old = json.loads(previous.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise OutputDirError(f"{previous} is not a manifest; give an empty directory") from None
                if not isinstance(old, dict) or old.get("export") != self.kind:
                    found = old.get("export") if isinstance(old, dict) else None
                    raise OutputDirError(f"{self.root} holds a {found!r} export, not {self.kind!r}; give an empty "
                                         "directory")
                for entry in old.get("files", []):
                    target = (self.root / str(entry.get("path", ""))).resolve()
                    if self.root.resolve() in target.parents and target.is_file():
                        target.unlink()
                previous.unlink()
                for folder in sorted((p for p in self.root.rglob("*") if p.is_dir()), reverse=True):
                    if not any(folder.iterdir()):
                        folder.rmdir()
            leftover = sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())
            if leftover:
                shown = ", ".join(leftover[:5]) + (" ..." if len(leftover) > 5 else "")
                raise OutputDirError(f"{self.root} is not empty ({shown}); give an empty or new directory")
        except OSError as exc:
            raise OutputDirError(f"cannot prepare {self.root}: {exc.strerror or exc}") from None

    def write_bytes(self, relative: str, data: bytes, rows: int | None = None) -> None:
        target = self.root / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            raise OutputDirError(f"cannot write {target}: {exc.strerror or exc}") from None
        self._files[relative] = ManifestFile(path=relative, sha256=hashlib.sha256(data).hexdigest(),
                                             bytes=len(data), rows=rows)

    def write_json(self, relative: str, value: Any, rows: int | None = None) -> None:
        self.write_bytes(relative, json_bytes(value), rows)

    def write_text(self, relative: str, text: str, rows: int | None = None) -> None:
        self.write_bytes(relative, text.encode("utf-8"), rows)

    def finish(self, *, parameters: Mapping[str, Any], platform: str, pseudonym_key_id: str, head: ChainHead,
               row_counts: Mapping[str, int]) -> tuple[Manifest, str]:
        """Write manifest.json; returns it and the SHA-256 of its bytes."""
        manifest = Manifest(export=self.kind, parameters=dict(parameters), platform=platform,
                            pseudonym_key_id=pseudonym_key_id, audit_chain_head=head, row_counts=dict(row_counts),
                            files=[self._files[k] for k in sorted(self._files)])
        data = json_bytes(manifest.model_dump(mode="json"))
        try:
            (self.root / MANIFEST).write_bytes(data)
        except OSError as exc:
            raise OutputDirError(f"cannot write {self.root / MANIFEST}: {exc.strerror or exc}") from None
        return manifest, hashlib.sha256(data).hexdigest()


def record_export(store: SqlCaseStore, manifest: Manifest, manifest_sha256: str) -> int:
    """Append the ``export.<kind>`` audit entry; returns its sequence number."""
    with store.transaction() as session:
        written = store.audit.append(session.connection(), [PendingEntry(
            f"export.{manifest.export}", f"export:{manifest.export}", payload=manifest.model_dump(mode="json"),
            versions={"export_schema": manifest.schema_version, "manifest_sha256": manifest_sha256})])
    return written[0].seq


def verify_folder(root: Path) -> list[str]:
    """Recompute every file's SHA-256 and size against the manifest; list what differs (empty = intact)."""
    path = root / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        return [f"{path}: cannot read ({exc.strerror or exc})"]
    except ValueError as exc:
        return [f"{path}: not a manifest ({exc})"]
    problems: list[str] = []
    listed = set()
    for entry in manifest.files:
        listed.add(entry.path)
        target = root / entry.path
        if not target.is_file():
            problems.append(f"{entry.path}: listed in the manifest but missing")
            continue
        if target.stat().st_size != entry.bytes or sha256_file(target) != entry.sha256:
            problems.append(f"{entry.path}: content differs from the manifest (sha256 mismatch)")
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                   and str(p.relative_to(root)) not in listed and p.name != MANIFEST)
    problems.extend(f"{name}: present but not listed in the manifest" for name in extra)
    return problems


__all__ = ["MANIFEST", "SCHEMA_VERSION", "ChainHead", "ExportFolder", "Manifest", "covered_head", "json_bytes",
           "record_export", "verify_folder"]
