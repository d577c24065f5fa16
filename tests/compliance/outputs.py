"""Checks on written export folders shared by the compliance tests: manifests recomputed, personal data searched."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from audit.chain import canonical
from audit.tables import audit_entries
from compliance.privacy import MIN_TEXT
from review.store import SqlCaseStore

ID_EDGE = r"A-Za-z0-9_\-"


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_manifest(root: Path, store: SqlCaseStore, kind: str) -> dict[str, Any]:
    """Every file's hash and size as the manifest says, nothing unlisted, and an audit entry committing to it."""
    manifest_bytes = (root / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert manifest["export"] == kind and manifest["schema_version"] == "lifeguard-export/1"
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = files_of(root)
    assert set(on_disk) - {"manifest.json"} == set(listed)
    for path, entry in listed.items():
        assert hashlib.sha256(on_disk[path]).hexdigest() == entry["sha256"], path
        assert len(on_disk[path]) == entry["bytes"], path
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    with store.engine.connect() as c:
        rows = c.execute(select(audit_entries.c.entry).where(audit_entries.c.action == f"export.{kind}")
                         .order_by(audit_entries.c.seq)).scalars().all()
    entries = [json.loads(r) for r in rows]
    matching = [e for e in entries if e["versions"].get("manifest_sha256") == digest]
    assert matching, "no audit entry records this manifest"
    assert matching[-1]["payload_hash"] == hashlib.sha256(canonical(manifest)).hexdigest()
    head = manifest["audit_chain_head"]
    assert head["seq"] < matching[-1]["seq"]
    return dict(manifest)


def personal_data_in(root: Path, user_ids: set[str], texts: set[str], conversations: set[str]) -> list[str]:
    """Every user id, conversation id and message text (of at least MIN_TEXT characters) found in the folder's
    files. Ids match as whole tokens; PNG files are searched too (as bytes)."""
    found: list[str] = []
    tokens = sorted(user_ids | conversations, key=len, reverse=True)
    pattern = re.compile(f"(?<![{ID_EDGE}])(?:{'|'.join(re.escape(t) for t in tokens)})(?![{ID_EDGE}])")
    long_texts = [t for t in texts if len(t.strip()) >= MIN_TEXT]
    for name, data in files_of(root).items():
        content = data.decode("utf-8", errors="replace")
        found.extend(f"{name}: id {m.group(0)}" for m in pattern.finditer(content))
        found.extend(f"{name}: text {t!r}" for t in long_texts if t in content)
    return found
