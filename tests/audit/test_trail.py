"""The audit trail: chained entries, signed checkpoints, append-only tables, tamper detection in the database
and in an exported file (every single changed byte is caught and named), one linear chain under concurrent
appends from several processes, pseudonyms only, purges that leave the chain intact."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from audit.chain import GENESIS, AuditEntry, verify_chain
from audit.export import verify_file, write_export
from audit.keys import AuditKeyError, Pseudonymizer, load_pseudonym_key, load_signing_key
from audit.log import PendingEntry
from pipeline.settings import Settings
from review.access import Principal, Role
from review.evidence import case_detail
from review.models import MessageRow
from review.store import SqlCaseStore, open_case_store
from tests.review import conversations as conv
from tests.review.databases import FakeClock, settings_for


def append(store: SqlCaseStore, count: int, actor: str | None = "mia") -> None:
    for i in range(count):
        with store.transaction() as s:
            store.audit.append(s.connection(), [PendingEntry("test.event", f"thing:{i}", actor_id=actor,
                                                             payload={"i": i}, versions={"rules": ["r@1"]})])


def verify(store: SqlCaseStore) -> object:
    with store.sessions() as s:
        return store.audit.verify(s.connection())


def export(store: SqlCaseStore, path: Path, clock: FakeClock) -> Path:
    with store.transaction() as s:
        store.audit.checkpoint(s.connection())
    with store.sessions() as s, path.open("w", encoding="utf-8", newline="\n") as out:
        write_export(store.audit.stored(s.connection()), out, store.audit.public_key, clock())
    return path


def test_entries_chain_and_checkpoints(store: SqlCaseStore) -> None:
    append(store, 25)
    with store.sessions() as s:
        rows = s.execute(text("SELECT entry, entry_hash FROM audit_entries ORDER BY seq")).all()
        checkpoints = store.audit.checkpoints(s.connection())
    entries = [AuditEntry.from_body(json.loads(r.entry)) for r in rows]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.digest() for a, b in itertools.pairwise(entries))
    assert all(e.digest() == r.entry_hash and e.canonical().decode() == r.entry for e, r in zip(entries, rows,
                                                                                                  strict=True))
    assert [c.seq for c in checkpoints] == [10, 20]  # audit_checkpoint_every = 10
    assert all(c.signature_valid(store.audit.public_key) for c in checkpoints)
    report = verify(store)
    assert report.ok and report.entries == 25 and report.last_signed_seq == 20  # type: ignore[attr-defined]
    assert report.warnings == ["entries 21..25 are not yet covered by a signed checkpoint"]  # type: ignore[attr-defined]
    with store.sessions() as s:
        other = verify_chain(store.audit.stored(s.connection()), Ed25519PrivateKey.generate().public_key())
    assert not other.ok and "signed by key" in (other.first_failure or "")


def test_actors_are_pseudonyms(store: SqlCaseStore, settings: Settings) -> None:
    append(store, 2, actor="mia")
    append(store, 1, actor=None)
    with store.sessions() as s:
        actors = [json.loads(e)["actor"] for e in s.execute(text("SELECT entry FROM audit_entries ORDER BY seq"))
                  .scalars()]
    mia = Pseudonymizer(load_pseudonym_key(settings))("mia")
    assert actors == [mia, mia, "system"]
    assert mia != Pseudonymizer(b"another key of 16+ bytes")("mia")


@pytest.mark.parametrize("statement", ["UPDATE audit_entries SET action = 'x' WHERE seq = 1",
                                       "DELETE FROM audit_entries WHERE seq = 1",
                                       "UPDATE audit_checkpoints SET head = 'x'",
                                       "DELETE FROM audit_checkpoints"])
def test_audit_tables_refuse_update_and_delete(store: SqlCaseStore, statement: str) -> None:
    append(store, 10)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
        c.execute(text(statement))
    assert verify(store).ok  # type: ignore[attr-defined]


@pytest.mark.services
@pytest.mark.parametrize("table", ["audit_entries", "audit_checkpoints"])
def test_postgres_refuses_truncate(pg_backend: str, tmp_path: Path, table: str) -> None:
    store = open_case_store(settings_for(pg_backend, tmp_path / "d"))
    append(store, 3)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE"), store.engine.begin() as c:
        c.execute(text(f"TRUNCATE {table}"))
    store.close()


def _bypass_append_only(store: SqlCaseStore, sql: str, **params: str) -> None:
    """What only a database superuser could do: change an entry behind the triggers' back."""
    with store.engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            c.execute(text("DROP TRIGGER IF EXISTS audit_entries_no_update"))
        c.execute(text(sql), params)


def test_database_tampering_is_named(store: SqlCaseStore) -> None:
    from review.integrity import missing_guards

    append(store, 12)
    with store.engine.connect() as c:
        assert missing_guards(c) == []
    _bypass_append_only(store, "UPDATE audit_entries SET entry = replace(entry, 'thing:6', 'thing:7') WHERE seq = 7")
    report = verify(store)
    assert report.first_failure.startswith("entry seq 7 (seq 7): hash mismatch")  # type: ignore[attr-defined]
    # A careful forger recomputes the hash too: the next entry's link and the signed checkpoint expose it.
    with store.engine.connect() as c:
        body = json.loads(store.audit.entries(c, after_seq=6, limit=1)[0][0])
    forged = AuditEntry.from_body(body)
    _bypass_append_only(store, "UPDATE audit_entries SET entry = :e, entry_hash = :h WHERE seq = 7",
                        e=forged.canonical().decode(), h=forged.digest())
    report = verify(store)
    assert not report.ok  # type: ignore[attr-defined]
    assert report.first_failure.startswith("entry seq 8 (seq 8): chain broken")  # type: ignore[attr-defined]
    # A forger who rewrites every later entry too leaves a consistent chain, but not the signed checkpoint.
    with store.engine.connect() as c:
        later = [AuditEntry.from_body(json.loads(e)) for e, _ in store.audit.entries(c, after_seq=7, limit=10)]
    prev = forged.digest()
    for entry in later:
        rewritten = AuditEntry(**{**entry.body(), "prev": prev})
        _bypass_append_only(store, "UPDATE audit_entries SET entry = :e, entry_hash = :h WHERE seq = :s",
                            e=rewritten.canonical().decode(), h=rewritten.digest(), s=str(entry.seq))
        prev = rewritten.digest()
    report = verify(store)
    with store.engine.connect() as c:
        if c.dialect.name == "sqlite":  # the forger dropped a trigger there; verify says so
            assert missing_guards(c) == ["table audit_entries has no active append-only trigger"]
    [failure] = report.failures  # type: ignore[attr-defined]
    assert failure.startswith("checkpoint at seq 10 (row seq 10): signed head ")
    assert " but the entries hash to " in failure


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the file format is the same for both
def test_every_changed_byte_of_an_export_is_named(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    """Flip the lowest bit of every byte of every entry and checkpoint line, one at a time: each change fails
    verification, and the first failure names the changed line."""
    append(store, 4)
    path = export(store, tmp_path / "audit.jsonl", clock)
    key = store.audit.public_key
    assert verify_file(path, key).ok
    original = path.read_bytes()
    lines = original.split(b"\n")
    start = len(lines[0]) + 1  # the header is not part of the chain; every later line is checked
    tried = 0
    for offset in range(start, len(original) - 1):  # -1: the final newline
        line_number = original[:offset].count(b"\n") + 1
        changed = bytearray(original)
        changed[offset] ^= 0x01
        path.write_bytes(bytes(changed))
        report = verify_file(path, key)
        assert not report.ok, (offset, bytes(changed[offset - 20:offset + 20]))
        assert f"line {line_number}" in (report.first_failure or ""), (offset, report.first_failure)
        tried += 1
    assert tried > 1500


def test_export_names_the_entry(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    append(store, 5)
    path = export(store, tmp_path / "audit.jsonl", clock)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"thing:2"', '"thing:9"')
    path.write_text("\n".join(lines) + "\n")
    report = verify_file(path, store.audit.public_key)
    assert report.first_failure is not None
    assert report.first_failure.startswith("entry seq 3 (line 4): hash mismatch")
    path.write_text("\n".join(lines[:-2]) + "\n")  # cut the tail including the final checkpoint
    assert any("not yet covered" in f for f in verify_file(path, store.audit.public_key).failures)


def _append_worker(settings_json: str, count: int) -> None:
    store = open_case_store(Settings.model_validate_json(settings_json))
    append(store, count, actor=f"worker-{os.getpid()}")
    store.close()


@pytest.mark.services
def test_concurrent_appends_from_processes_keep_one_chain(pg_backend: str, tmp_path: Path) -> None:
    settings = settings_for(pg_backend, tmp_path / "d", audit_checkpoint_every=7)
    store = open_case_store(settings)  # creates the key files once, before the workers start
    store.engine.dispose()  # no pooled connections to share with forked children
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_worker, args=(settings.model_dump_json(), 30)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    report = verify(store)
    assert report.ok and report.entries == 120, report.failures  # type: ignore[attr-defined]
    assert report.checkpoints == 120 // 7  # type: ignore[attr-defined]
    store.close()


def test_purging_message_text_keeps_the_chain(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    case_id = store.cases_report()[0]["case_id"]
    auditor = Principal("tok-a", "ada", Role.AUDITOR)
    before = case_detail(store=store, principal=auditor, case_id=case_id, now=clock())
    assert all(m.text for m in before.transcript.messages)
    # What a retention purge does to the case store (compliance/retention.py adds tombstones and its own entry)
    with store.transaction() as s:
        purged = s.execute(update(MessageRow).where(MessageRow.ts < conv.START + timedelta(days=1))
                           .values(text=None, purged_at=clock())).rowcount
    assert purged == len(conv.mixed_queue())
    after = case_detail(store=store, principal=auditor, case_id=case_id, now=clock())
    assert all(m.text is None and m.purged and m.text_sha256 for m in after.transcript.messages)
    assert [m.text_sha256 for m in after.transcript.messages] == [m.text_sha256 for m in before.transcript.messages]
    assert verify(store).ok  # type: ignore[attr-defined]


def test_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first, again = load_signing_key(settings), load_signing_key(settings)
    assert first.public_key() == again.public_key()
    for name in ("audit-signing.key",):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert load_pseudonym_key(settings) == load_pseudonym_key(settings)
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600
    configured = Settings(data_dir=tmp_path, audit_signing_key="A" * 43 + "=")
    assert load_signing_key(configured).public_key() != first.public_key()
    with pytest.raises(AuditKeyError, match="32-byte"):
        load_signing_key(Settings(data_dir=tmp_path, audit_signing_key="AAAA"))
    with pytest.raises(AuditKeyError, match="base64"):
        load_signing_key(Settings(data_dir=tmp_path, audit_signing_key="not base64!"))
