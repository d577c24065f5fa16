"""``lifeguard audit``: verify the chain (database or exported file), export it, publish the public key, sign a
checkpoint on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.settings import load_settings

err = Console(stderr=True, soft_wrap=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _public_key_arg(value: str) -> str:
    """A key given inline (base64 or PEM) or as a path to a file holding one."""
    path = Path(value)
    try:
        if len(value) < 4096 and path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {value}: {exc.strerror or exc}")
    return value


@audit_app.command("verify")
def verify(
    file: Annotated[Path | None, typer.Option("--file", help="Check an exported JSONL file offline.")] = None,
    public_key: Annotated[str | None, typer.Option("--public-key", help="base64, PEM, or a file holding one "
                                                   "(default: this installation's key).")] = None,
) -> None:
    """Check the hash chain and checkpoint signatures; name the first entry that fails. Exit 1 on failure."""
    from audit.chain import EntryFormatError, VerifyReport, parse_public_key
    from audit.export import AuditFileError, verify_file

    key = None
    if public_key is not None:
        try:
            key = parse_public_key(_public_key_arg(public_key))
        except (EntryFormatError, ValueError) as exc:
            _fail(f"--public-key: {exc}")
    report: VerifyReport
    if file is not None:
        if key is None:
            _fail("--file needs --public-key: an offline check must not trust a key found next to the data")
            return
        try:
            report = verify_file(file, key)
        except AuditFileError as exc:
            _fail(str(exc))
            return
    else:
        from sqlalchemy.orm import Session

        from audit.log import snapshot
        from review.cli import open_store_or_fail
        from review.integrity import check_decision_records, missing_guards

        store = open_store_or_fail(load_settings())
        try:
            with snapshot(store.engine) as conn:
                report = store.audit.verify(conn, key)
                report.failures.extend(check_decision_records(Session(bind=conn)))
                report.warnings.extend(missing_guards(conn))
        finally:
            store.close()
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if not report.ok:
        for failure in report.failures[1:]:
            err.print(f"  also: {failure}")
        print(f"FAILED at {report.first_failure}")
        print(report.summary())
        raise typer.Exit(1)
    print(report.summary())


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write (entries and signed checkpoints).")],
    sign: Annotated[bool, typer.Option(help="Sign a checkpoint at the head first, so the file is fully "
                                       "covered.")] = True,
) -> None:
    """Write every entry and checkpoint as JSONL, for offline verification by a third party."""
    from audit.export import write_export
    from audit.log import snapshot
    from review.cli import open_store_or_fail
    from review.store import utc_now

    store = open_store_or_fail(load_settings())
    try:
        if sign:
            with store.transaction() as session:
                store.audit.checkpoint(session.connection())
        tmp = out.with_name(out.name + ".tmp")
        out.parent.mkdir(parents=True, exist_ok=True)
        with snapshot(store.engine) as conn, tmp.open("w", encoding="utf-8", newline="\n") as handle:
            entries, checkpoints = write_export(store.audit.stored(conn), handle, store.audit.public_key, utc_now())
        tmp.replace(out)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
        return
    finally:
        store.close()
    err.print(f"exported {entries} entries and {checkpoints} checkpoints -> {out}")


@audit_app.command("public-key")
def public_key_command(
    pem: Annotated[bool, typer.Option("--pem", help="PEM instead of base64 raw bytes.")] = False,
) -> None:
    """Print the checkpoint verification key (the last output line)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from audit.chain import key_id, public_key_b64
    from audit.keys import AuditKeyError, load_signing_key

    try:
        key = load_signing_key(load_settings()).public_key()
    except AuditKeyError as exc:
        _fail(str(exc))
        return
    err.print(f"Ed25519 public key, key id {key_id(key)}")
    if pem:
        print(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode().strip())
    else:
        print(public_key_b64(key))


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint at the current head now."""
    from review.cli import open_store_or_fail

    store = open_store_or_fail(load_settings())
    try:
        with store.transaction() as session:
            signed = store.audit.checkpoint(session.connection())
    finally:
        store.close()
    print("head already signed (or log empty)" if signed is None else f"signed seq {signed.seq} head {signed.head}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
