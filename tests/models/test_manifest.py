"""Artifacts load only when the manifest vouches for them; anything else is a clear ModelArtifactError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.loader import MODELS_DIR, load_models
from models.manifest import MANIFEST_NAME, ModelArtifactError, read_manifest, write_manifest
from models.stage import VOCABULARY_FILE, WEIGHTS_FILE, load_stage_classifier


@pytest.fixture
def stage_copy(tmp_path: Path) -> Path:
    (tmp_path / "stage").mkdir()
    for name in (VOCABULARY_FILE, WEIGHTS_FILE):
        shutil.copyfile(MODELS_DIR / name, tmp_path / name)
    write_manifest(tmp_path, "t", {"stage-ngram": {"version": "t", "files": [VOCABULARY_FILE, WEIGHTS_FILE]}})
    return tmp_path


def test_shipped_manifest_covers_every_artifact() -> None:
    manifest = read_manifest(MODELS_DIR)
    for name in manifest.files:
        manifest.verified_path(name)
    listed = {n for entry in manifest.models.values() for n in entry["files"]}
    assert listed == set(manifest.files)
    on_disk = {str(p.relative_to(MODELS_DIR)) for sub in ("stage", "exemplar", "fusion")
               for p in (MODELS_DIR / sub).iterdir() if p.is_file()}
    assert on_disk <= set(manifest.files), "an artifact ships without a manifest entry"


def test_no_pickle_anywhere_in_models() -> None:
    banned = {".pkl", ".pickle", ".joblib", ".npy", ".npz", ".pt", ".bin"}
    assert not [p for p in MODELS_DIR.rglob("*") if p.suffix in banned]


def test_loads_when_hashes_match(stage_copy: Path) -> None:
    classifier = load_stage_classifier(read_manifest(stage_copy))
    assert len(classifier.sha256) == 64


def test_tampered_artifact_is_refused(stage_copy: Path) -> None:
    weights = stage_copy / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_stage_classifier(read_manifest(stage_copy))


def test_missing_artifact_and_missing_manifest(stage_copy: Path, tmp_path: Path) -> None:
    (stage_copy / VOCABULARY_FILE).unlink()
    with pytest.raises(ModelArtifactError, match="missing"):
        load_stage_classifier(read_manifest(stage_copy))
    with pytest.raises(ModelArtifactError, match="never trained"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(ModelArtifactError, match="never trained"):
        load_models(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["stage/model.pkl", "../outside.json"])
def test_unsafe_entries_are_refused(stage_copy: Path, name: str) -> None:
    raw = json.loads((stage_copy / MANIFEST_NAME).read_text())
    raw["files"][name] = "0" * 64
    (stage_copy / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelArtifactError, match="refusing"):
        read_manifest(stage_copy)
