"""``lifeguard audit verify / export / public-key / checkpoint`` as an operator and a third party use them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.settings import Settings
from review.access import Principal, Role
from review.casework import record_decision
from review.policy import Action, ReasonCode
from review.queue import claim_case
from review.store import SqlCaseStore
from tests.review import conversations as conv
from tests.review.databases import FakeClock
from tests.review.test_cli import env_for


def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env_for(settings))
    return result.exit_code, result.stdout, result.stderr


def populate(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    mod = Principal("tok-1", "mia", Role.MODERATOR)
    case_id = next(c["case_id"] for c in store.cases_report() if c["conversation_id"] == "dm-secret")
    claim_case(store=store, principal=mod, case_id=case_id, now=clock())
    record_decision(store=store, principal=mod, case_id=case_id, action=Action.BANNED,
                    reason_code=ReasonCode.OFF_PLATFORM, note="", now=clock())


def test_verify_export_and_offline_check(store: SqlCaseStore, settings: Settings, clock: FakeClock,
                                         tmp_path: Path) -> None:
    populate(store, clock, tmp_path)
    code, out, err = invoke(settings, "audit", "verify")
    assert code == 0, err
    assert out.startswith("OK: ") and "not yet covered" in err
    code, out, err = invoke(settings, "audit", "public-key")
    assert code == 0
    public_key = out.strip().splitlines()[-1]
    exported = tmp_path / "audit.jsonl"
    code, _, err = invoke(settings, "audit", "export", "--out", str(exported))
    assert code == 0 and "exported" in err
    code, out, err = invoke(settings, "audit", "verify", "--file", str(exported), "--public-key", public_key)
    assert code == 0 and out.startswith("OK: "), out + err
    assert invoke(settings, "audit", "verify")[2] == ""  # the export signed the head: no unsigned tail now

    # One changed byte in one entry: named.
    lines = exported.read_bytes().split(b"\n")
    target = 6  # line 6 holds entry seq 5
    position = lines[target - 1].index(b'"time":"') + 10
    lines[target - 1] = lines[target - 1][:position] + b"9" + lines[target - 1][position + 1:]
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"\n".join(lines))
    code, out, _ = invoke(settings, "audit", "verify", "--file", str(tampered), "--public-key", public_key)
    assert code == 1
    assert out.splitlines()[0].startswith("FAILED at entry seq 5 (line 6): hash mismatch")

    # The public key may also be given as a PEM file; a foreign key is refused.
    pem = tmp_path / "key.pem"
    pem.write_text(invoke(settings, "audit", "public-key", "--pem")[1])
    assert invoke(settings, "audit", "verify", "--file", str(exported), "--public-key", str(pem))[0] == 0
    foreign = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
    code, out, _ = invoke(settings, "audit", "verify", "--file", str(exported), "--public-key", foreign)
    assert code == 1 and "signed by key" in out
    code, _, err = invoke(settings, "audit", "verify", "--file", str(exported))
    assert code == 2 and "--file needs --public-key" in err


def test_database_verify_names_a_tampered_record(store: SqlCaseStore, settings: Settings, clock: FakeClock,
                                                 tmp_path: Path) -> None:
    populate(store, clock, tmp_path)
    assert invoke(settings, "audit", "checkpoint")[1].startswith("signed seq ")
    assert invoke(settings, "audit", "checkpoint")[1].startswith("head already signed")
    with store.engine.begin() as c:  # decision records are not append-only; the chain still catches edits
        c.execute(text("UPDATE decision_records SET record = replace(record, '\"risk\"', '\"risky\"') "
                       "WHERE audit_seq = (SELECT min(audit_seq) FROM decision_records)"))
    code, out, _ = invoke(settings, "audit", "verify")
    assert code == 1
    assert "FAILED at decision record for event" in out
