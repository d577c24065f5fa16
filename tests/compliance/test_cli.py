"""CLI behaviour an operator sees: precise errors with non-zero exits, summaries, `export verify` on tampering."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compliance.conftest import World, run_cli


@pytest.mark.parametrize(("args", "message"), [
    (["export", "dsa", "--from", "2026-13-01", "--to", "2026-03-31"], "--from: '2026-13-01' is not a date"),
    (["export", "dsa", "--from", "2026-03-01", "--to", "March"], "--to: 'March' is not a date"),
    (["export", "transparency", "--from", "2026-04-01", "--to", "2026-03-01"], "is after --to"),
    (["export", "ncmec", "--case", "case-nope"], "no case case-nope"),
    (["export", "ncmec"], "give either --case ID or both --from and --to"),
    (["export", "ncmec", "--from", "2026-03-01"], "--from and --to go together"),
    (["retention", "apply", "--now", "tomorrow"], "--now: 'tomorrow' is not a date-time"),
    (["retention", "apply", "--now", "2027-01-01T00:00:00"], "has no UTC offset"),
])
def test_bad_input_exits_2_with_a_precise_message(world: World, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    result = run_cli(world, *args, "--out", str(tmp_path / "out")) if args[0] == "export" else run_cli(world, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_ncmec_for_a_case_that_was_not_reported(world: World, tmp_path: Path) -> None:
    result = run_cli(world, "export", "ncmec", "--case", world.cases["secret"], "--out", str(tmp_path / "nc"))
    assert result.exit_code == 2
    assert "not reported_ncmec" in " ".join(result.output.split())


def test_export_verify_catches_a_changed_file(world: World, tmp_path: Path) -> None:
    out = tmp_path / "dsa"
    done = run_cli(world, "export", "dsa", "--from", "2026-03-01", "--to", "2026-03-31", "--out", str(out))
    assert done.exit_code == 0 and "statements of reasons" in done.output
    assert run_cli(world, "export", "verify", str(out)).exit_code == 0
    batch = out / "statements-0001.json"
    batch.write_bytes(batch.read_bytes().replace(b"Yes", b"No", 1))
    result = run_cli(world, "export", "verify", str(out))
    assert result.exit_code == 1
    assert "statements-0001.json: content differs from the manifest" in result.output


def test_ncmec_and_retention_summaries(world: World, tmp_path: Path) -> None:
    result = run_cli(world, "export", "ncmec", "--case", world.cases["meet"], "--out", str(tmp_path / "nc"))
    assert result.exit_code == 0 and "1 report bundles" in result.output and "nothing was submitted" in result.output
    dry = run_cli(world, "retention", "apply", "--now", "2030-01-01", "--dry-run")
    assert dry.exit_code == 0 and "would purge" in dry.output
