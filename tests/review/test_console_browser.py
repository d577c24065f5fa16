"""The console in a real browser: Debian's Chromium driven by Playwright against uvicorn on a free loopback port,
over a SQLite store seeded by the real decision core. Screenshots of the queue and a case go to test-artifacts/.

As a moderator, a senior and an auditor: sign in (and a wrong token), claim, decide with the keyboard only,
reveal a redacted message (and find the reveal in the audit trail), refused POSTs (auditor, missing CSRF),
sign out.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from review.api import create_app
from review.models import CaseActionRow, CaseRow
from tests.review.console_seed import HANDLE, PHONE, World, build_world

sync_api = pytest.importorskip("playwright.sync_api")
Browser, Page, expect = sync_api.Browser, sync_api.Page, sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")]


@dataclass
class Console:
    base: str
    world: World

    def url(self, path: str) -> str:
        return self.base + path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    world = build_world(tmp_path_factory.mktemp("console"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(world.store), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield Console(f"http://127.0.0.1:{port}", world)
    server.should_exit = True
    thread.join(timeout=10)
    world.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


QUEUE = re.compile(r"^http://[^/]+/console/queue$")
SIGN_IN = re.compile(r"^http://[^/]+/console/sign-in(\?next=[^&]*)?$")


def sign_in(page: Any, console: Console, role: str) -> None:
    page.goto(console.url("/console/"))
    page.wait_for_url(SIGN_IN)
    page.locator("#token").fill(console.world.tokens[role])
    page.keyboard.press("Enter")
    page.wait_for_url(QUEUE)


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


CONTRAST_JS = """(selector) => Array.from(document.querySelectorAll(selector)).slice(0, 3).map((el) => {
  let bg = el, color = getComputedStyle(el).color, back = "rgba(0, 0, 0, 0)";
  while (bg && (back === "rgba(0, 0, 0, 0)" || back === "transparent")) {
    back = getComputedStyle(bg).backgroundColor; bg = bg.parentElement;
  }
  return [color, back];
})"""


def _luminance(css: str) -> float:
    channels = [int(x) / 255 for x in re.findall(r"\d+", css)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(page: Any, selector: str) -> float:
    """The lowest text/background contrast ratio among the first elements matching ``selector``."""
    pairs = page.evaluate(CONTRAST_JS, selector)
    assert pairs, selector
    ratios = []
    for fg, bg in pairs:
        light, dark = sorted((_luminance(fg), _luminance(bg)), reverse=True)
        ratios.append((light + 0.05) / (dark + 0.05))
    return min(ratios)


def case_row(console: Console, case_id: str) -> CaseRow:
    with console.world.store.sessions() as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        return row


def audit_entries(console: Console, action: str) -> list[dict[str, Any]]:
    store = console.world.store
    with store.sessions() as session:
        rows = store.audit.entries(session.connection(), after_seq=0, limit=100_000)
    return [e for e in (json.loads(text) for text, _ in rows) if e["action"] == action]


def test_a_wrong_token_is_a_clear_error_on_the_sign_in_page(console: Console, page: Any) -> None:
    page.goto(console.url("/console/queue"))
    page.wait_for_url(SIGN_IN)
    page.locator("#token").fill("lgt_this-is-not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#sign-in-error")).to_contain_text("not accepted")
    expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("label[for=token]")).to_have_text("API token")


def test_queue_and_case_page_for_a_moderator(console: Console, page: Any) -> None:
    sign_in(page, console, "moderator")
    expect(page.locator("#flash")).to_contain_text("Signed in as moderator-mia")
    rows = page.locator("table.queue tbody tr")
    expect(rows.first).to_be_visible()
    assert page.locator("tr.overdue").count() >= 1  # the cases stored 20 minutes ago are past first review
    expect(page.locator("tr.overdue .sla-overdue").first).to_contain_text("overdue")
    assert contrast(page, ".sla-overdue") >= 4.5 and contrast(page, ".case-link") >= 4.5
    assert page.locator(".badge-escalated").count() == 0  # escalations are for seniors
    screenshot(page, "console-queue.png")

    case_id = console.world.cases["dm-contact"]
    page.goto(console.url(f"/console/cases/{case_id}"))
    page.keyboard.press("c")  # claim
    expect(page.locator("#decision")).to_be_visible()
    expect(page.locator(".status-claimed")).to_contain_text("claimed")
    transcript = page.locator("ol.transcript")
    expect(transcript.locator("mark").first).to_be_visible()  # evidence spans
    expect(transcript).to_contain_text("[phone number]")
    expect(transcript).to_contain_text("[username on another app]")
    html = page.content()
    assert PHONE not in html and HANDLE not in html  # redacted on the server, not hidden by CSS
    expect(page.locator("ol.timeline li").first).to_contain_text("trust building")
    expect(page.locator("#verification")).to_be_visible()
    expect(page.locator("section[aria-labelledby=fanout-title]")).to_contain_text(console.world.cases["dm-other"])
    expect(page.locator("section[aria-labelledby=models-title] tbody tr").first).to_be_visible()
    expect(page.locator("input[value=reported_ncmec]")).to_have_count(0)  # moderators do not report to NCMEC
    for selector in ("body", ".msg-body", "mark", ".redacted", "button.primary", ".sla", ".hint", ".stage",
                     ".prio-1", "th", ".msg-meta", "label"):
        assert contrast(page, selector) >= 4.5, selector  # WCAG AA for text
    screenshot(page, "console-case.png", full_page=True)
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible


def test_a_moderator_claims_and_decides_with_the_keyboard_only(console: Console, page: Any) -> None:
    page.goto(console.url("/console/sign-in"))
    expect(page.locator("#token")).to_be_focused()  # autofocus: no click needed
    page.keyboard.type(console.world.tokens["moderator"])
    page.keyboard.press("Enter")
    page.wait_for_url(QUEUE)
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help button")).to_be_focused()
    page.keyboard.press("Enter")  # its Close button has focus
    expect(page.locator("#help")).to_be_hidden()

    page.keyboard.press("n")  # claim the next case and open it
    page.wait_for_url(re.compile(r"/console/cases/case-[0-9a-f]{20}$"))
    case_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#flash")).to_contain_text(f"Claimed {case_id}")
    page.keyboard.press("d")
    expect(page.locator("input[name=action]").first).to_be_focused()
    page.keyboard.press("3")  # restrict
    expect(page.locator("#action-restricted")).to_be_checked()
    expect(page.locator("#reason_code")).to_have_value(re.compile(r"^CSE-"))
    page.keyboard.press("Enter")
    page.wait_for_url(QUEUE)
    expect(page.locator("#flash")).to_contain_text(f"Decided {case_id}: restrict")

    row = case_row(console, case_id)
    assert (row.status, row.outcome) == ("closed", "restricted")
    with console.world.store.sessions() as session:
        actions = session.scalars(select(CaseActionRow).where(CaseActionRow.case_id == case_id)
                                  .order_by(CaseActionRow.id)).all()
    assert [(a.action, a.actor) for a in actions] == [("claimed", "moderator-mia"), ("restricted", "moderator-mia")]
    assert actions[-1].reason_code is not None and actions[-1].reason_code.startswith("CSE-")


def test_revealing_a_redacted_message_is_audited(console: Console, page: Any) -> None:
    sign_in(page, console, "moderator")
    case_id = console.world.cases["dm-contact"]
    page.goto(console.url(f"/console/cases/{case_id}"))
    message = page.locator("li.msg", has_text="text me")
    expect(message).to_contain_text("[phone number]")
    before = len(audit_entries(console, "case.pii_revealed"))

    message.get_by_role("button", name=re.compile("Reveal the hidden phone number")).click()
    expect(message).to_contain_text(PHONE)
    expect(message).to_contain_text("recorded in the audit trail")
    expect(page.locator("#flash")).to_contain_text("recorded in the audit trail")
    expect(page.locator("li.msg", has_text="add me on snap")).not_to_contain_text(HANDLE)  # one message at a time
    page.locator("ol.transcript").screenshot(path=str(ARTIFACTS / "console-transcript-revealed.png"))

    entries = audit_entries(console, "case.pii_revealed")
    assert len(entries) == before + 1
    entry = entries[-1]
    assert entry["actor"] == console.world.store.audit.pseudonyms("moderator-mia")
    assert entry["subject"] == f"case:{case_id}"
    assert entry["versions"] == {"message": "dm-contact-e5", "kinds": "phone"}


def test_the_auditor_reads_everything_and_can_change_nothing(console: Console, page: Any) -> None:
    sign_in(page, console, "auditor")
    expect(page.locator(".readonly")).to_contain_text("Read-only")
    expect(page.locator("button.claim")).to_have_count(0)
    expect(page.locator("#claim-next")).to_have_count(0)
    screenshot(page, "console-queue-auditor.png")

    case_id = console.world.cases["dm-secret"]
    page.goto(console.url(f"/console/cases/{case_id}"))
    expect(page.locator("section[aria-labelledby=transcript-title]")).to_be_visible()
    expect(page.locator("#decision")).to_have_count(0)
    expect(page.locator("#claim")).to_have_count(0)
    expect(page.locator("input[name=action]")).to_have_count(0)
    page.keyboard.press("c")
    page.keyboard.press("d")
    expect(page.locator("#flash .flash-error")).to_be_visible()

    csrf = page.locator("body").get_attribute("data-csrf")
    forged = [(f"/console/cases/{case_id}/claim", {}),
              (f"/console/cases/{case_id}/decision", {"action": "banned", "reason_code": "CSE-1.4"}),
              (f"/console/cases/{case_id}/escalate", {}),
              ("/console/queue/claim-next", {})]
    for path, form in forged:
        answer = page.request.post(console.url(path), form={"csrf_token": csrf, **form}, max_redirects=0)
        assert answer.status in (403, 404, 405), (path, answer.status)
        if not path.endswith("/escalate"):
            assert answer.status == 403, (path, answer.status)
            assert "may not" in answer.text()
    assert (case_row(console, case_id).status, case_row(console, case_id).claimed_by) == ("open", None)

    page.goto(console.url("/console/audit"))
    expect(page.locator("section[aria-labelledby=cp-title] tbody tr").first).to_be_visible()
    page.goto(console.url("/console/audit?after_seq=0"))
    expect(page.locator("table.entries")).to_contain_text("case.opened")
    screenshot(page, "console-audit.png")


def test_a_post_without_the_csrf_token_is_refused(console: Console, page: Any) -> None:
    sign_in(page, console, "moderator")
    case_id = console.world.cases["dm-001"]
    claim = console.url(f"/console/cases/{case_id}/claim")
    assert page.request.post(claim, form={}, max_redirects=0).status == 403
    assert page.request.post(claim, form={"csrf_token": "forged"}, max_redirects=0).status == 403
    page.goto(console.url(f"/console/cases/{case_id}"))
    csrf = page.locator("body").get_attribute("data-csrf")
    other_site = page.request.post(claim, form={"csrf_token": csrf}, headers={"Origin": "http://evil.example"},
                                   max_redirects=0)
    assert other_site.status == 403
    assert case_row(console, case_id).status == "open"


def test_a_senior_sees_escalations_and_reports_to_ncmec(console: Console, browser: Any, page: Any) -> None:
    sign_in(page, console, "senior")
    page.goto(console.url("/console/queue?escalated=yes"))
    case_id = console.world.cases["dm-meet"]
    expect(page.locator(f"tr[data-case={case_id}] .badge-escalated")).to_be_visible()
    page.goto(console.url(f"/console/cases/{case_id}"))
    page.keyboard.press("c")
    expect(page.locator("#decision")).to_be_visible()
    expect(page.locator("label[for=action-reported_ncmec]")).to_contain_text("Report to NCMEC")
    expect(page.locator("#action-escalated")).to_have_count(0)  # already escalated
    page.keyboard.press("d")
    page.keyboard.press("6")
    expect(page.locator("#action-reported_ncmec")).to_be_checked()
    page.keyboard.press("Enter")
    page.wait_for_url(QUEUE)
    assert case_row(console, case_id).outcome == "reported_ncmec"

    moderator = browser.new_page()
    try:
        sign_in(moderator, console, "moderator")
        refused = moderator.goto(console.url(f"/console/cases/{case_id}"))
        assert refused is not None and refused.status == 403
        expect(moderator.locator("#error-title")).to_have_text("Not allowed")
    finally:
        moderator.context.close()


def test_sign_out_ends_the_session(console: Console, page: Any) -> None:
    sign_in(page, console, "moderator")
    session = next(c for c in page.context.cookies() if c["name"] == "lg_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    page.locator("#sign-out").click()
    page.wait_for_url(SIGN_IN)
    expect(page.locator("#flash")).to_contain_text("Signed out")
    page.goto(console.url("/console/queue"))
    page.wait_for_url(SIGN_IN)
    page.context.add_cookies([session])  # a copy of the old cookie is refused too
    page.goto(console.url("/console/queue"))
    page.wait_for_url(SIGN_IN)
    actors = {e["actor"] for e in audit_entries(console, "console.signed_out")}
    assert console.world.store.audit.pseudonyms("moderator-mia") in actors
