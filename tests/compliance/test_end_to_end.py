"""The issue's acceptance path on SQLite and PostgreSQL: replay + decisions, then every export through the CLI,
checked as a regulator or auditor would: statements valid, no personal data, manifests recomputed, the audit
chain verified after a retention purge."""

from __future__ import annotations

import json
from pathlib import Path

from compliance.validator import validate_batch
from tests.compliance.conftest import World, run_cli
from tests.compliance.outputs import check_manifest, files_of, personal_data_in

PERIOD = ("--from", "2026-03-01", "--to", "2026-03-31")


def test_exports_then_retention_keep_the_chain_verifiable(any_world: World, tmp_path: Path) -> None:
    world = any_world
    out = {kind: tmp_path / kind for kind in ("dsa", "ncmec", "transparency")}
    for kind in ("dsa", "transparency"):
        result = run_cli(world, "export", kind, *PERIOD, "--out", str(out[kind]))
        assert result.exit_code == 0, result.output
    result = run_cli(world, "export", "ncmec", *PERIOD, "--out", str(out["ncmec"]))
    assert result.exit_code == 0, result.output

    # DSA: every statement valid, batches of at most 100, five human restrictions + the automated ones.
    statements = []
    for name, data in files_of(out["dsa"]).items():
        if name.startswith("statements-"):
            batch = json.loads(data)["statements"]
            assert validate_batch(batch) == [], name
            statements.extend(batch)
    decided = [s for s in statements if s["automated_decision"] != "AUTOMATED_DECISION_FULLY"]
    assert len(decided) == 5  # reported, banned x2, restricted x2 (warned and dismissed restrict nothing)
    assert any(s["automated_decision"] == "AUTOMATED_DECISION_FULLY" for s in statements)
    assert len({s["puid"] for s in statements}) == len(statements)

    # No user id, conversation id or message text outside the NCMEC bundle.
    for kind in ("dsa", "transparency"):
        assert personal_data_in(out[kind], world.user_ids, world.texts, world.conversation_ids) == []
        check_manifest(out[kind], world.store, kind)
    manifest = check_manifest(out["ncmec"], world.store, "ncmec")
    assert manifest["row_counts"]["reports"] == 1
    bundle = "\n".join(d.decode() for d in files_of(out["ncmec"]).values())
    assert "adult-1" in bundle and "we could meet at the mall saturday" in bundle

    # Retention far in the future purges every decided conversation; the chain still verifies; twice = once.
    purge = run_cli(world, "retention", "apply", "--now", "2028-06-01T00:00:00Z")
    assert purge.exit_code == 0 and "purged" in purge.output, purge.output
    verify = run_cli(world, "audit", "verify")
    assert verify.exit_code == 0 and "OK" in verify.output, verify.output
    assert run_cli(world, "retention", "verify").exit_code == 0
    again = run_cli(world, "retention", "apply", "--now", "2028-06-01T00:00:00Z")
    assert "purged 0 message texts and 0 notes" in again.output, again.output
    for kind, folder in out.items():
        assert run_cli(world, "export", "verify", str(folder)).exit_code == 0, kind
