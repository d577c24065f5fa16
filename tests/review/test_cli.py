"""``lifeguard db upgrade``, ``token create``, ``replay --persist`` and ``serve`` on both databases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.settings import Settings
from review.access import Role, authenticate
from review.db import head_revision
from review.store import open_case_store
from tests.review import conversations as conv


def env_for(settings: Settings) -> dict[str, str | None]:
    return {"LIFEGUARD_DATA_DIR": str(settings.data_dir), "LIFEGUARD_DATABASE_URL": settings.database_url,
            "LIFEGUARD_AUDIT_SIGNING_KEY": None, "LIFEGUARD_PSEUDONYM_KEY": None}


def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env_for(settings))
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_is_idempotent(settings: Settings) -> None:
    code, _, err = invoke(settings, "db", "upgrade")
    assert code == 0 and ("migrated" in err or "already at" in err), err
    head = head_revision()
    code, _, err = invoke(settings, "db", "upgrade")
    assert code == 0 and f"already at {head}" in err
    code, out, _ = invoke(settings, "db", "current")
    assert out.strip() == f"database {head}, code {head}"


def test_token_create_prints_the_token_last(settings: Settings) -> None:
    code, out, err = invoke(settings, "token", "create", "--role", "senior", "--name", "Sam")
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert token.startswith("lgt_") and len(token) > 40
    store = open_case_store(settings)
    principal = authenticate(store=store, token=token)
    assert principal is not None and (principal.role, principal.name) == (Role.SENIOR, "Sam")
    code, out, _ = invoke(settings, "token", "list")
    assert principal.token_id in out and token not in out
    assert invoke(settings, "token", "revoke", principal.token_id)[0] == 0
    assert authenticate(store=store, token=token) is None
    store.close()
    code, _, err = invoke(settings, "token", "create", "--role", "root", "--name", "x")
    assert code == 2 and "--role must be one of moderator, senior, auditor, admin" in err


def test_replay_persist_backfills_the_store(settings: Settings, tmp_path: Path) -> None:
    events = conv.write(tmp_path / "e.jsonl", conv.mixed_queue())
    code, _, err = invoke(settings, "replay", str(events), "--report", str(tmp_path / "r.json"), "--persist")
    assert code == 0, err
    assert "persisted to the case store" in err
    report = json.loads((tmp_path / "r.json").read_text())
    store = open_case_store(settings)
    assert store.cases_report() == report["cases"]
    with store.sessions() as s:
        assert store.audit.verify(s.connection()).ok
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_answers(settings: Settings) -> None:
    port = _free_port()
    token = invoke(settings, "token", "create", "--role", "moderator", "--name", "mia")[1].strip().splitlines()[-1]
    env = {**os.environ, **{k: v for k, v in env_for(settings).items() if v is not None}}
    if settings.database_url is None:
        env.pop("LIFEGUARD_DATABASE_URL", None)
    lifeguard = Path(sys.executable).parent / "lifeguard"  # the installed console script
    proc = subprocess.Popen([str(lifeguard), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("lifeguard serve did not become ready")
        assert httpx.get(f"{base}/v1/cases", timeout=5).status_code == 401
        listed = httpx.get(f"{base}/v1/cases", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert listed.status_code == 200 and listed.json()["total"] == 0
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["info"]["title"] == "Lifeguard review API"
    finally:
        proc.terminate()
        proc.wait(10)
