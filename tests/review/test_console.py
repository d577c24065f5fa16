"""The console over HTTP, in-process, on SQLite and PostgreSQL: sessions and CSRF, role checks on every POST,
decisions through the same services as /v1, the audited reveal, and the PII redaction itself."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.rulebook import load_rulebook
from review.access import Role, create_token, revoke_token
from review.api import create_app
from review.console.pages import STAGE_CODES
from review.console.redaction import find_pii, mask, pieces
from review.evidence import Segment
from review.store import SqlCaseStore
from tests.review import conversations as conv
from tests.review.console_seed import CONTACT, HANDLE, PHONE
from tests.review.databases import FakeClock

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A TestClient with a cookie jar and a person behind it."""

    def __init__(self, app: Any, base_url: str = "http://testserver") -> None:
        self.client = TestClient(app, base_url=base_url, follow_redirects=False)
        self.csrf = ""

    def sign_in(self, token: str) -> Any:  # starlette's TestClient response type varies with its version
        page = self.client.get("/console/sign-in")
        nonce = CSRF_FIELD.search(page.text)
        assert nonce is not None
        answer = self.client.post("/console/sign-in", data={"token": token, "csrf_token": nonce.group(1)})
        if answer.status_code == 303:
            queue = self.client.get("/console/queue")
            found = re.search(r'data-csrf="([^"]+)"', queue.text)
            assert found is not None
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, **form: str) -> Any:  # starlette's TestClient response type varies with its version
        return self.client.post(path, data={"csrf_token": self.csrf, **form})

    def get(self, path: str) -> Any:  # starlette's TestClient response type varies with its version
        return self.client.get(path)


class World:
    def __init__(self, store: SqlCaseStore, clock: FakeClock, tokens: dict[str, str], cases: dict[str, str]) -> None:
        self.store, self.clock, self.tokens, self.cases = store, clock, tokens, cases
        self.app = create_app(store, clock=clock)

    def browser(self, role: str | None = None, base_url: str = "http://testserver") -> Browser:
        b = Browser(self.app, base_url)
        if role is not None:
            assert b.sign_in(self.tokens[role]).status_code == 303
        return b

    def entries(self, action: str) -> list[dict[str, Any]]:
        with self.store.sessions() as session:
            rows = self.store.audit.entries(session.connection(), after_seq=0, limit=100_000)
        return [e for e in (json.loads(t) for t, _ in rows) if e["action"] == action]


@pytest.fixture
def world(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    events = [*conv.conversation("dm-contact", CONTACT, adult="adult-7", child="kid-7"), *conv.mixed_queue()]
    conv.run(conv.write(tmp_path / "e.jsonl", events), sink=store)
    tokens = {role.value: create_token(store=store, role=role, name=f"{role.value}-person", now=clock())[1]
              for role in Role}
    yield World(store, clock, tokens, {c["conversation_id"]: c["case_id"] for c in store.cases_report()})


# ------------------------------------------------------------------------------------------ sessions, CSRF
def test_pages_need_a_session(world: World) -> None:
    anonymous = world.browser()
    for path in ("/console/queue", f"/console/cases/{world.cases['dm-secret']}", "/console/audit"):
        answer = anonymous.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, f"/console/sign-in?next={path}")
    assert anonymous.client.post(f"/console/cases/{world.cases['dm-secret']}/claim").status_code == 303


def test_a_wrong_token_is_a_401_with_a_clear_message(world: World) -> None:
    answer = world.browser().sign_in("lgt_" + "x" * 43)
    assert answer.status_code == 401
    assert "not accepted" in answer.text and 'aria-invalid="true"' in answer.text


def test_the_session_cookie_is_hardened(world: World) -> None:
    answer = world.browser().sign_in(world.tokens["moderator"])
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("lg_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http (a local console); over https the cookie is Secure:
    secure = world.browser(base_url="https://testserver").sign_in(world.tokens["moderator"])
    assert all("Secure" in c for c in secure.headers.get_list("set-cookie") if c.startswith("lg_console="))
    assert world.tokens["moderator"] not in cookie  # the cookie carries the token id, never the token


def test_sign_in_needs_its_form_nonce(world: World) -> None:
    browser = world.browser()
    answer = browser.client.post("/console/sign-in", data={"token": world.tokens["moderator"]})
    assert answer.status_code == 403 and "sign-in form expired" in answer.text


def test_a_tampered_cookie_or_a_revoked_token_ends_the_session(world: World) -> None:
    browser = world.browser("moderator")
    good = browser.client.cookies["lg_console"]
    browser.client.cookies.clear()
    browser.client.cookies.set("lg_console", good[:-3] + "abc", path="/console")
    assert browser.get("/console/queue").status_code == 303
    browser.client.cookies.clear()
    browser.client.cookies.set("lg_console", good, path="/console")
    assert browser.get("/console/queue").status_code == 200
    token_id = next(e for e in world.entries("console.signed_in"))["subject"].split(":", 1)[1]
    assert revoke_token(store=world.store, token_id=token_id, now=world.clock())
    assert browser.get("/console/queue").status_code == 303


def test_sign_out_is_audited_and_the_old_cookie_stops_working(world: World) -> None:
    browser = world.browser("moderator")
    old = browser.client.cookies["lg_console"]
    answer = browser.post("/console/sign-out")
    assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in")
    browser.client.cookies.clear()
    browser.client.cookies.set("lg_console", old, path="/console")
    assert browser.get("/console/queue").status_code == 303
    assert [e["actor"] for e in world.entries("console.signed_out")] == [world.store.audit.pseudonyms(
        "moderator-person")]


@pytest.mark.parametrize("path", ["/console/queue/claim-next", "/console/cases/{case}/claim",
                                  "/console/cases/{case}/release", "/console/cases/{case}/heartbeat",
                                  "/console/cases/{case}/decision", "/console/cases/{case}/messages/x/reveal",
                                  "/console/sign-out"])
def test_every_post_needs_the_csrf_token(world: World, path: str) -> None:
    browser = world.browser("moderator")
    target = path.format(case=world.cases["dm-secret"])
    assert browser.client.post(target, data={"action": "dismissed", "reason_code": "NV-1"}).status_code == 403
    assert browser.client.post(target, data={"csrf_token": "nope"}).status_code == 403
    other_site = browser.client.post(target, data={"csrf_token": browser.csrf}, headers={"Origin": "https://x.example"})
    assert other_site.status_code == 403
    assert world.entries("case.claimed") == [] and world.entries("case.pii_revealed") == []


# ------------------------------------------------------------------------------------------ roles
def test_the_auditor_gets_no_controls_and_every_work_post_is_refused(world: World) -> None:
    auditor = world.browser("auditor")
    case_id = world.cases["dm-secret"]
    queue_page = auditor.get("/console/queue").text
    page = auditor.get(f"/console/cases/{case_id}").text
    assert "Read-only" in queue_page and 'class="claim"' not in queue_page and "claim-next" not in queue_page
    assert 'id="decision"' not in page and 'id="claim"' not in page and 'name="action"' not in page
    for path, form in [(f"/console/cases/{case_id}/claim", {}), ("/console/queue/claim-next", {}),
                       (f"/console/cases/{case_id}/decision", {"action": "banned", "reason_code": "CSE-1.4"}),
                       (f"/console/cases/{case_id}/release", {}), (f"/console/cases/{case_id}/heartbeat", {})]:
        answer = auditor.post(path, **form)
        assert answer.status_code == 403, path
        assert "may not" in answer.text
    assert world.entries("case.claimed") == []
    audit = auditor.get("/console/audit")
    assert audit.status_code == 200 and "case.opened" in audit.text
    assert world.browser("moderator").get("/console/audit").status_code == 403


def test_escalations_and_the_ncmec_action_are_for_seniors(world: World) -> None:
    escalated = world.cases["dm-meet"]
    moderator, senior = world.browser("moderator"), world.browser("senior")
    assert escalated not in moderator.get("/console/queue?status=").text
    assert moderator.get(f"/console/cases/{escalated}").status_code == 403
    assert moderator.get("/console/queue?escalated=yes").status_code == 200  # the filter value is ignored, flagged
    assert escalated in senior.get("/console/queue?escalated=yes").text
    assert senior.post(f"/console/cases/{escalated}/claim").status_code == 303
    assert 'value="reported_ncmec"' in senior.get(f"/console/cases/{escalated}").text
    mine = world.cases["dm-secret"]
    assert moderator.post(f"/console/cases/{mine}/claim").status_code == 303
    assert 'value="reported_ncmec"' not in moderator.get(f"/console/cases/{mine}").text
    refused = moderator.post(f"/console/cases/{mine}/decision", action="reported_ncmec", reason_code="CSE-1.4")
    assert refused.status_code == 403


# ------------------------------------------------------------------------------------------ casework
def test_a_console_decision_is_the_api_decision(world: World) -> None:
    moderator = world.browser("moderator")
    case_id = world.cases["dm-secret"]
    assert moderator.post(f"/console/cases/{case_id}/claim").status_code == 303
    decided = moderator.post(f"/console/cases/{case_id}/decision", action="restricted", reason_code="CSE-1.4",
                             note="moved to snap")
    assert (decided.status_code, decided.headers["location"]) == (303, "/console/queue")
    assert "Decided" in moderator.get("/console/queue").text  # the flash
    api = TestClient(world.app).get(f"/v1/cases/{case_id}",
                                    headers={"Authorization": f"Bearer {world.tokens['auditor']}"}).json()
    assert api["case"]["status"] == "closed" and api["case"]["outcome"] == "restricted"
    assert [(h["action"], h["reason_code"], h["note"]) for h in api["history"]] == [
        ("claimed", None, None), ("restricted", "CSE-1.4", "moved to snap")]
    assert [e["subject"] for e in world.entries("case.restricted")] == [f"case:{case_id}"]


def test_a_decision_the_policy_refuses_comes_back_as_a_message(world: World) -> None:
    moderator = world.browser("moderator")
    case_id = world.cases["dm-secret"]
    moderator.post(f"/console/cases/{case_id}/claim")
    answer = moderator.post(f"/console/cases/{case_id}/decision", action="dismissed", reason_code="CSE-1.4")
    assert (answer.status_code, answer.headers["location"]) == (303, f"/console/cases/{case_id}")
    page = moderator.get(f"/console/cases/{case_id}").text
    assert "flash-error" in page and "no-violation code" in page
    assert moderator.post(f"/console/cases/{case_id}/decision", action="warned").status_code == 303
    assert "Choose the policy reason code" in moderator.get(f"/console/cases/{case_id}").text
    assert 'id="decision"' in moderator.get(f"/console/cases/{case_id}").text  # still held, still decidable


def test_claim_next_escalate_and_a_lease_taken_by_someone_else(world: World) -> None:
    moderator, other = world.browser("moderator"), world.browser("senior")
    claimed = moderator.post("/console/queue/claim-next")
    case_id = claimed.headers["location"].rsplit("/", 1)[1]
    assert claimed.status_code == 303 and case_id in world.cases.values()
    taken = other.post(f"/console/cases/{case_id}/claim")
    assert taken.headers["location"] == f"/console/cases/{case_id}"
    assert "held by another moderator" in other.get(f"/console/cases/{case_id}").text
    assert moderator.post(f"/console/cases/{case_id}/heartbeat").json()["lease_expires_at"]
    escalated = moderator.post(f"/console/cases/{case_id}/decision", action="escalated", note="needs a senior")
    assert escalated.status_code == 303 and "Escalated" in moderator.get("/console/queue").text
    assert moderator.get(f"/console/cases/{case_id}").status_code == 403  # now in the senior queue


# ------------------------------------------------------------------------------------------ redaction
def test_contact_details_are_redacted_and_a_reveal_is_audited(world: World) -> None:
    moderator = world.browser("moderator")
    case_id = world.cases["dm-contact"]
    page = moderator.get(f"/console/cases/{case_id}")
    assert PHONE not in page.text and HANDLE not in page.text
    assert "[phone number]" in page.text and "[username on another app]" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]

    fragment = moderator.client.post(f"/console/cases/{case_id}/messages/dm-contact-e5/reveal",
                                     headers={"X-Console-Fetch": "1", "X-CSRF-Token": moderator.csrf})
    assert fragment.status_code == 200 and PHONE in fragment.text and "<html" not in fragment.text
    full = moderator.post(f"/console/cases/{case_id}/messages/dm-contact-e4/reveal")  # without JavaScript
    assert HANDLE in full.text and PHONE not in full.text and "Revealed by you" in full.text

    entries = world.entries("case.pii_revealed")
    assert [(e["actor"], e["subject"], e["versions"]) for e in entries] == [
        (world.store.audit.pseudonyms("moderator-person"), f"case:{case_id}", {"message": "dm-contact-e5",
                                                                               "kinds": "phone"}),
        (world.store.audit.pseudonyms("moderator-person"), f"case:{case_id}", {"message": "dm-contact-e4",
                                                                               "kinds": "handle"})]
    missing = moderator.post(f"/console/cases/{case_id}/messages/dm-meet-e1/reveal")  # another conversation's
    assert missing.status_code == 404 and len(world.entries("case.pii_revealed")) == 2


@pytest.mark.parametrize(("text", "hidden", "kinds"), [
    ("add me on snap: sk8rboi_09", "sk8rboi_09", {"handle"}),
    ("my discord is Zed#4821", "Zed#4821", {"handle"}),
    ("add sk8rboi on insta", "sk8rboi", {"handle"}),
    ("my insta @lil.gamer", "@lil.gamer", {"handle"}),
    ("or text me 07700 900123", "07700 900123", {"phone"}),
    ("call (555) 123-4567 tonight", "555) 123-4567", {"phone"}),
    ("five five five one two three four", "five five", {"phone"}),
    ("email kid.x@example.com", "kid.x@example.com", {"email"}),
    ("kid dot x at example dot com", "example", {"email"}),
    ("i live at 12 Oak Street", "12 Oak Street", {"address"}),
    ("postcode LS1 4AB", "LS1 4AB", {"address"}),
    ("join discord.gg/abc123", "discord.gg/abc123", {"link"}),
    ("s n a p is sk8rboi", "sk8rboi", {"handle"}),
])
def test_contact_details_are_found(text: str, hidden: str, kinds: set[str]) -> None:
    found = find_pii(text)
    assert {r.kind for r in found} == kinds
    assert hidden not in mask(text)


@pytest.mark.parametrize("text", ["how old are you?", "don't tell ur parents we talk ok", "add me on snap",
                                  "snap is better", "we could meet at the mall saturday", "im 11",
                                  "level 12 done, score 1500, 3 lives left"])
def test_ordinary_chat_is_not_redacted(text: str) -> None:
    assert find_pii(text) == ()


def test_a_redaction_keeps_the_evidence_marking_of_what_it_hides() -> None:
    text = "add me on snap: sk8rboi_09 ok"
    segments = (Segment("add me on snap: sk8", True, ("isolation.x",)), Segment("rboi_09 ok", False, ()))
    drawn = pieces(segments, find_pii(text))
    assert [(p.text, p.evidence, p.redacted) for p in drawn] == [
        ("add me on snap: ", True, None), ("handle", True, "handle"), (" ok", False, None)]


def test_stage_codes_are_the_codes_the_rule_packs_cite() -> None:
    cited: dict[str, set[str]] = {}
    for rule in load_rulebook(None).rules:
        cited.setdefault(rule.rule.stage.value, set()).add(rule.rule.policy.split()[0])
    assert {stage: {c.value for c in codes} for stage, codes in STAGE_CODES.items()} == cited


def test_bad_addresses_are_html_errors_not_json(world: World) -> None:
    moderator = world.browser("moderator")
    missing = moderator.get("/console/cases/case-00000000000000000000")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert moderator.get("/console/cases/not-a-case").status_code == 404
    typo = moderator.get("/console/queue?statuss=open")
    assert typo.status_code == 422 and "statuss" in typo.text
    odd = moderator.get("/console/queue?status=archived&stage=DROP")
    assert odd.status_code == 200 and "unknown status" in odd.text and "unknown stage" in odd.text


def test_sign_in_returns_to_the_page_asked_for_and_only_to_a_console_page(world: World) -> None:
    browser = world.browser()
    case_path = f"/console/cases/{world.cases['dm-secret']}"
    assert browser.get(case_path).headers["location"] == f"/console/sign-in?next={case_path}"
    form = browser.get(f"/console/sign-in?next={case_path}").text
    nonce = CSRF_FIELD.search(form)
    assert nonce is not None and f'name="next" value="{case_path}"' in form
    answer = browser.client.post("/console/sign-in", data={"token": world.tokens["moderator"],
                                                           "csrf_token": nonce.group(1), "next": case_path})
    assert answer.headers["location"] == case_path
    for evil in ("https://evil.example/", "//evil.example/console/", "/console/../v1/cases", "/v1/cases"):
        other = world.browser()
        page = other.get(f"/console/sign-in?next={evil}").text
        nonce = CSRF_FIELD.search(page)
        assert nonce is not None and 'name="next"' not in page
        sent = other.client.post("/console/sign-in", data={"token": world.tokens["moderator"],
                                                          "csrf_token": nonce.group(1), "next": evil})
        assert sent.headers["location"] == "/console/queue", evil
