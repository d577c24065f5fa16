"""``lifeguard db``, ``lifeguard token`` and ``lifeguard serve``. Heavy imports stay inside the commands so the
CLI starts fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from review.store import SqlCaseStore

err = Console(stderr=True, soft_wrap=True)
db_app = typer.Typer(help="The case database: migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for the review API.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_store_or_fail(settings: Settings) -> SqlCaseStore:
    """The case store, or a one-line error for the operator (database down, bad key)."""
    from audit.keys import AuditKeyError
    from review.db import DatabaseError
    from review.store import open_case_store

    try:
        return open_case_store(settings)
    except (DatabaseError, AuditKeyError) as exc:
        _fail(str(exc))
        raise  # unreachable


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the case database to the current schema (idempotent)."""
    from review.db import DatabaseError, make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings)
    try:
        before, after = upgrade(engine)
    except DatabaseError as exc:
        _fail(str(exc))
        return
    finally:
        engine.dispose()
    state = "already at" if before == after else f"migrated {before or 'empty'} ->"
    err.print(f"{_redacted(settings.effective_database_url())}: {state} {after}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and of the code."""
    from review.db import DatabaseError, current_revision, head_revision, make_engine

    settings = load_settings()
    engine = make_engine(settings)
    try:
        current = current_revision(engine)
    except DatabaseError as exc:
        _fail(str(exc))
        return
    finally:
        engine.dispose()
    print(f"database {current or 'empty'}, code {head_revision()}")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="moderator, senior, auditor or admin")],
    name: Annotated[str, typer.Option("--name", help="Who holds the token (shown in case history).")],
) -> None:
    """Create an API token. The token is printed once, as the last line of output; only its hash is kept."""
    from review.access import Role, create_token
    from review.store import utc_now

    try:
        parsed = Role(role)
    except ValueError:
        _fail(f"--role must be one of {', '.join(r.value for r in Role)}")
        return
    if not name.strip() or len(name.strip()) > 128:
        _fail("--name must be 1..128 characters")
    store = open_store_or_fail(load_settings())
    try:
        principal, token = create_token(store=store, role=parsed, name=name, now=utc_now())
    finally:
        store.close()
    err.print(f"created {principal.token_id} for {principal.name} ({principal.role}); store it now, it is not "
              "shown again:")
    print(token, flush=True)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token id (tok-...), not the token.")]) -> None:
    from review.access import revoke_token
    from review.store import utc_now

    store = open_store_or_fail(load_settings())
    try:
        done = revoke_token(store=store, token_id=token_id, now=utc_now())
    finally:
        store.close()
    if not done:
        _fail(f"no live token {token_id}", 1)
    err.print(f"revoked {token_id}")


@token_app.command("list")
def token_list() -> None:
    from review.access import list_tokens

    store = open_store_or_fail(load_settings())
    try:
        for token_id, name, role, created, revoked in list_tokens(store=store):
            state = f"revoked {revoked.isoformat()}" if revoked else "live"
            print(f"{token_id}\t{role}\t{name}\tcreated {created.isoformat()}\t{state}")
    finally:
        store.close()


def serve_command(
    host: Annotated[str | None, typer.Option("--host", help="Default: LIFEGUARD_API_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: LIFEGUARD_API_PORT (8080).")] = None,
) -> None:
    """Start the review API (FastAPI under /v1, OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from review.api import create_app

    settings = load_settings(api_host=host, api_port=port)
    store = open_store_or_fail(settings)
    err.print(f"review API on http://{settings.api_host}:{settings.api_port} "
              f"(database {_redacted(settings.effective_database_url())})")
    try:
        uvicorn.run(create_app(store), host=settings.api_host, port=settings.api_port, log_level="info")
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(token_app, name="token")
    app.command("serve")(serve_command)
