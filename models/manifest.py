"""The artifact manifest: every file a model loads, with its sha256, checked before anything is parsed.

``models/manifest.json`` is written by ``lifeguard train`` and committed with the artifacts. Loading refuses
any file that is missing, unlisted or whose hash differs, so a worker never scores with a model other than
the one its decision records name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# Formats that cannot execute code when loaded. Anything else in a manifest is refused.
SAFE_SUFFIXES = frozenset({".json", ".safetensors", ".onnx", ".md"})


class ModelArtifactError(RuntimeError):
    """A model artifact is missing, unsafe or does not match models/manifest.json.

    Operators: restore the committed models/ folder (``git checkout -- models``) or retrain with
    ``lifeguard train``; never edit the manifest by hand to silence this. Until fixed, run without models only
    knowingly: the rules still decide, and model-dependent cases are not opened.
    """


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    root: Path
    version: str
    files: dict[str, str]  # relative path -> sha256
    models: dict[str, dict[str, Any]]  # model id -> {"version", "files": [...], ...}

    def verified_path(self, relative: str) -> Path:
        """The path of a listed artifact after checking its hash (raises ModelArtifactError otherwise)."""
        expected = self.files.get(relative)
        if expected is None:
            raise ModelArtifactError(f"{relative} is not listed in {self.root / MANIFEST_NAME}")
        path = self.root / relative
        if not path.is_file():
            raise ModelArtifactError(f"model artifact {path} is missing")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelArtifactError(
                f"model artifact {path} has sha256 {actual[:16]}…, the manifest expects {expected[:16]}…"
            )
        return path

    def model_sha256(self, model_id: str) -> str:
        """One hash naming a model: the sha256 over its files' hashes (recorded with every decision)."""
        entry = self.models.get(model_id)
        if entry is None:
            raise ModelArtifactError(f"model {model_id!r} is not listed in {self.root / MANIFEST_NAME}")
        joined = "\n".join(f"{name}:{self.files[name]}" for name in sorted(entry["files"]))
        return hashlib.sha256(joined.encode()).hexdigest()


def write_manifest(root: Path, version: str, models: dict[str, dict[str, Any]]) -> Manifest:
    files: dict[str, str] = {}
    for entry in models.values():
        for name in entry["files"]:
            path = root / name
            if path.suffix not in SAFE_SUFFIXES:
                raise ModelArtifactError(f"refusing to list {name}: only {sorted(SAFE_SUFFIXES)} may ship")
            files[name] = sha256_of(path)
    payload = {"manifest_version": MANIFEST_VERSION, "version": version, "files": dict(sorted(files.items())),
               "models": models}
    (root / MANIFEST_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Manifest(root, version, files, models)


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelArtifactError(f"{path} not found: models were never trained here") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("manifest_version") != MANIFEST_VERSION:
        raise ModelArtifactError(f"{path}: unsupported manifest (expected manifest_version {MANIFEST_VERSION})")
    files = raw.get("files")
    models = raw.get("models")
    if not isinstance(files, dict) or not isinstance(models, dict):
        raise ModelArtifactError(f"{path}: 'files' and 'models' must be objects")
    for name in files:
        if Path(name).suffix not in SAFE_SUFFIXES or ".." in Path(name).parts:
            raise ModelArtifactError(f"{path}: refusing artifact {name!r} (unsafe format or path)")
    return Manifest(root, str(raw.get("version", "")), {str(k): str(v) for k, v in files.items()}, models)
