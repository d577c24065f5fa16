"""The review API over HTTP (in-process): the moderator's walk through a case, every endpoint against every role
it must refuse and without a valid token, precise 4xx answers, bounded pagination, metrics and health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from audit.chain import key_id, public_key_b64
from review.access import Role, create_token
from review.api import create_app
from review.store import SqlCaseStore
from tests.review import conversations as conv
from tests.review.databases import FakeClock

ROLES = [r.value for r in Role]


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str], cases: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens
        self.cases = cases

    def call(self, method: str, path: str, role: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        sent = dict(headers or {})
        if role is not None:
            sent["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.request(method, path, json=body, headers=sent)


@pytest.fixture
def api(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> Iterator[Api]:
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    tokens = {}
    for role in Role:
        tokens[role.value] = create_token(store=store, role=role, name=f"{role.value}-person", now=clock())[1]
        tokens[f"other-{role.value}"] = create_token(store=store, role=role, name=f"other-{role.value}",
                                                     now=clock())[1]
    cases = {c["conversation_id"]: c["case_id"] for c in store.cases_report()}
    with TestClient(create_app(store, clock=clock)) as client:
        yield Api(client, tokens, cases)


def test_moderator_walks_a_case_from_queue_to_decision(api: Api, store: SqlCaseStore) -> None:
    queue = api.call("GET", "/v1/cases?status=open", "moderator").json()
    assert [c["conversation_id"] for c in queue["items"]] == ["dm-small", "dm-secret", "dm-mild"]
    case_id = queue["items"][0]["case_id"]

    detail = api.call("GET", f"/v1/cases/{case_id}", "moderator").json()
    messages = detail["transcript"]["messages"]
    assert [m["text"] for m in messages][:2] == ["hey", "hi"]
    secret = next(m for m in messages if m["text"] == "don't tell ur parents we talk ok")
    assert secret["evidence"] and secret["highlights"][0]["reason_id"] == "secrecy.dont_tell"
    marked = "".join(s["text"] for s in secret["segments"] if s["evidence"])
    assert marked and marked in secret["text"]
    assert [s["stage"] for s in detail["stage_timeline"]][:2] == ["trust_building", "secrecy"]
    assert {h["id"] for h in detail["rule_hits"]} >= {"secrecy.dont_tell", "isolation.offplatform_request"}
    assert detail["age"]["relation"] == "adult_minor" and detail["age"]["youngest_band"] == "under_9"
    # adult-2 also writes to kid-2 in dm-secret: the fan-out shows it
    assert detail["fanout"][0]["subject"] == "adult-2"
    assert [c["case_id"] for c in detail["fanout"][0]["other_cases"]] == [api.cases["dm-secret"]]

    claimed = api.call("POST", f"/v1/cases/{case_id}/claim", "moderator").json()
    assert claimed["status"] == "claimed" and claimed["claimed_by"] == "moderator-person"
    assert api.call("POST", f"/v1/cases/{case_id}/heartbeat", "moderator").status_code == 200
    taken = api.call("POST", f"/v1/cases/{case_id}/claim", "other-moderator")
    assert taken.status_code == 409 and "held by another moderator" in taken.json()["detail"]
    decided = api.call("POST", f"/v1/cases/{case_id}/decision", "moderator",
                       {"action": "restricted", "reason_code": "CSE-1.4", "note": "asked for secrecy, moved to snap"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "closed" and decided.json()["outcome"] == "restricted"
    history = api.call("GET", f"/v1/cases/{case_id}", "auditor").json()["history"]
    assert [h["action"] for h in history] == ["claimed", "restricted"]

    with store.engine.connect() as c:
        entries = [json.loads(e) for e in c.execute(text("SELECT entry FROM audit_entries ORDER BY seq")).scalars()]
    viewed = [e for e in entries if e["action"] == "case.viewed"]
    assert len(viewed) == 2 and all(e["actor"].startswith("ps:") for e in viewed)
    assert viewed[0]["actor"] != viewed[1]["actor"]  # moderator and auditor, different pseudonyms
    assert "moderator-person" not in json.dumps(entries) and "don't tell" not in json.dumps(entries)
    assert [e["action"] for e in entries][-3:] == ["case.claimed", "case.restricted", "case.viewed"]


def _endpoints(api: Api) -> list[tuple[str, str, Any, list[str]]]:
    """(method, path, body, roles that must be refused with 403)."""
    ordinary, escalated = api.cases["dm-secret"], api.cases["dm-meet"]
    decide = {"action": "warned", "reason_code": "CSE-1.4", "note": ""}
    return [
        ("GET", "/v1/cases", None, []),
        ("GET", "/v1/cases?escalated=true", None, ["moderator"]),
        ("GET", f"/v1/cases/{ordinary}", None, []),
        ("GET", f"/v1/cases/{escalated}", None, ["moderator"]),
        ("POST", "/v1/queue/claim", None, ["auditor"]),
        ("POST", f"/v1/cases/{ordinary}/claim", None, ["auditor"]),
        ("POST", f"/v1/cases/{escalated}/claim", None, ["auditor", "moderator"]),
        ("POST", f"/v1/cases/{ordinary}/heartbeat", None, ["auditor"]),
        ("POST", f"/v1/cases/{escalated}/heartbeat", None, ["auditor", "moderator"]),
        ("POST", f"/v1/cases/{ordinary}/release", None, ["auditor"]),
        ("POST", f"/v1/cases/{ordinary}/decision", decide, ["auditor"]),
        ("POST", f"/v1/cases/{escalated}/decision", decide, ["auditor", "moderator"]),
        ("POST", f"/v1/cases/{ordinary}/decision", {**decide, "action": "reported_ncmec"}, ["auditor", "moderator"]),
        ("POST", f"/v1/cases/{ordinary}/escalate", {"note": "x"}, ["auditor"]),
        ("GET", "/v1/audit/checkpoints", None, ["moderator", "senior"]),
        ("POST", "/v1/audit/checkpoints", None, ["moderator", "senior", "auditor"]),
        ("GET", "/v1/audit/entries", None, ["moderator", "senior"]),
    ]


def test_every_endpoint_refuses_the_roles_it_must(api: Api) -> None:
    checked = 0
    for method, path, body, refused in _endpoints(api):
        for role in refused:
            response = api.call(method, path, role, body)
            assert response.status_code == 403, (method, path, role, response.text)
            assert "may not" in response.json()["detail"]
            checked += 1
    assert checked == 23


def test_roles_not_refused_are_let_through(api: Api) -> None:
    """The other side of the matrix: allowed roles never get 401/403 (they may get 409 as state changes)."""
    for method, path, body, refused in _endpoints(api):
        for role in (r for r in ROLES if r not in refused):
            response = api.call(method, path, role, body)
            assert response.status_code not in (401, 403), (method, path, role, response.text)


def test_every_authenticated_endpoint_needs_a_valid_token(api: Api) -> None:
    bad = {"missing": {}, "unknown": {"Authorization": "Bearer lgt_not-a-real-token"},
           "malformed": {"Authorization": "Bearer x"}, "wrong scheme": {"Authorization": "Basic YTpi"},
           "empty": {"Authorization": "Bearer "}}
    for method, path, body, _ in _endpoints(api):
        for why, headers in bad.items():
            response = api.call(method, path, None, body, headers)
            assert response.status_code == 401, (method, path, why, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(api: Api, store: SqlCaseStore, clock: FakeClock) -> None:
    from review.access import authenticate, revoke_token

    principal = authenticate(store=store, token=api.tokens["moderator"])
    assert principal is not None
    assert revoke_token(store=store, token_id=principal.token_id, now=clock())
    assert api.call("GET", "/v1/cases", "moderator").status_code == 401


def test_method_not_allowed_lists_every_method(api: Api) -> None:
    response = api.call("DELETE", "/v1/audit/checkpoints", "admin")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"


def test_public_endpoints(api: Api, store: SqlCaseStore) -> None:
    key = api.call("GET", "/v1/audit/public-key").json()
    assert key == {"algorithm": "Ed25519", "public_key": public_key_b64(store.audit.public_key),
                   "key_id": key_id(store.audit.public_key)}
    assert api.call("GET", "/healthz").json() == {"status": "ok", "detail": None}
    assert api.call("GET", "/readyz").json()["status"] == "ok"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"action": "nuked", "reason_code": "CSE-1.4"}, 422, "action"),
    ({"action": "warned", "reason_code": "CSE-9.9"}, 422, "reason_code"),
    ({"action": "warned"}, 422, "reason_code"),
    ({"action": "warned", "reason_code": "CSE-1.4", "extra": 1}, 422, "extra"),
    ({"action": "warned", "reason_code": "CSE-1.4", "note": "x" * 4001}, 422, "note"),
    ({"action": "dismissed", "reason_code": "CSE-1.4"}, 422, "Input should be 'NV-1' or 'NV-2'"),
    ({"action": "banned", "reason_code": "NV-1"}, 422, "Input should be 'AGE-1.1', 'AGE-2.1'"),
    ([1, 2], 422, "body"),
])
def test_malformed_decisions_get_precise_4xx(api: Api, body: Any, status: int, fragment: str) -> None:
    case_id = api.cases["dm-secret"]
    api.call("POST", f"/v1/cases/{case_id}/claim", "moderator")
    response = api.call("POST", f"/v1/cases/{case_id}/decision", "moderator", body)
    assert response.status_code == status, response.text
    assert fragment in response.text


def test_decision_schema_partitions_the_policy() -> None:
    from typing import get_args

    from review.api.schemas import EnforcementAction, NoViolationCode, ViolationCode
    from review.policy import CLOSING, NO_VIOLATION_CODES, REOPENABLE, Action, ReasonCode

    assert set(get_args(NoViolationCode)) == {c.value for c in NO_VIOLATION_CODES}
    assert set(get_args(ViolationCode)) == {c.value for c in ReasonCode} - {c.value for c in NO_VIOLATION_CODES}
    assert set(get_args(EnforcementAction)) | {"dismissed", "escalated"} == {a.value for a in Action}
    assert {a.value for a in (*REOPENABLE, *CLOSING)} | {"escalated"} == {a.value for a in Action}


def test_broken_json_and_bad_ids(api: Api) -> None:
    case_id = api.cases["dm-secret"]
    broken = api.client.post(f"/v1/cases/{case_id}/decision", content=b'{"action": "warned",',
                             headers={"Authorization": f"Bearer {api.tokens['moderator']}",
                                      "Content-Type": "application/json"})
    assert broken.status_code == 422 and "JSON decode error" in broken.text
    assert api.call("GET", "/v1/cases/not-a-case", "moderator").status_code == 422
    missing = api.call("GET", "/v1/cases/case-00000000000000000000", "moderator")
    assert missing.status_code == 404 and "no case" in missing.json()["detail"]


def test_pagination_is_bounded(api: Api) -> None:
    assert api.call("GET", "/v1/cases?limit=101", "senior").status_code == 422
    assert api.call("GET", "/v1/cases?limit=0", "senior").status_code == 422
    assert api.call("GET", "/v1/cases?offset=-1", "senior").status_code == 422
    first = api.call("GET", "/v1/cases?limit=3", "senior").json()
    second = api.call("GET", f"/v1/cases?limit=3&offset={first['next_offset']}", "senior").json()
    assert first["total"] == 4 and len(first["items"]) == 3 and second["next_offset"] is None
    assert {c["case_id"] for c in first["items"] + second["items"]} == set(api.cases.values())
    assert api.call("GET", "/v1/audit/entries?limit=1001", "auditor").status_code == 422


def test_audit_routes(api: Api) -> None:
    entries = api.call("GET", "/v1/audit/entries?limit=5", "auditor").json()
    assert [e["entry"]["seq"] for e in entries] == [1, 2, 3, 4, 5]
    signed = api.call("POST", "/v1/audit/checkpoints", "admin").json()["checkpoint"]
    assert signed is not None
    assert api.call("POST", "/v1/audit/checkpoints", "admin").json()["checkpoint"] is None  # head already signed
    checkpoints = api.call("GET", "/v1/audit/checkpoints", "auditor").json()
    assert checkpoints[-1] == signed


def test_metrics(api: Api, clock: FakeClock) -> None:
    case_id = api.cases["dm-secret"]
    api.call("POST", f"/v1/cases/{case_id}/claim", "moderator")
    clock.advance(45)  # within the 60 s lease
    decided = api.call("POST", f"/v1/cases/{case_id}/decision", "moderator",
                       {"action": "warned", "reason_code": "CSE-1.4"})
    assert decided.status_code == 200, decided.text
    body = api.call("GET", "/metrics").text
    assert 'lifeguard_review_queue_depth{escalated="false",priority="1"} 1.0' in body
    assert 'lifeguard_review_queue_depth{escalated="true",priority="1"} 1.0' in body
    assert 'lifeguard_review_decisions_total{action="warned"} 1.0' in body
    assert 'lifeguard_review_time_to_action_seconds_bucket{le="300"} 1.0' in body
    assert 'lifeguard_review_time_to_action_seconds_bucket{le="60"} 1.0' in body
    assert "lifeguard_review_time_to_action_seconds_sum 45.0" in body
    assert "lifeguard_review_oldest_case_age_seconds" in body
    assert 'lifeguard_review_sla_breached_cases{clock="first_review",priority="1"}' in body
