"""Console routes: HTML in, the same review services as ``/v1`` underneath, HTML or a redirect out.

Every POST checks the session's CSRF token before anything else; the services then decide what the role may
do, so an auditor's forged claim or decision is refused (403) by the same check that refuses it on the API.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.templating import Jinja2Templates

from review import casework, evidence, queue, trail
from review.access import Permission, Principal, authenticate
from review.api.deps import NowDep, StoreDep
from review.console import pages
from review.console.redaction import LABELS, mask, reveal_message
from review.console.session import (
    SIGN_IN_COOKIE,
    ConsoleSession,
    CsrfError,
    Flash,
    SessionBook,
    SignInRequiredError,
    audit_sign,
    check_csrf,
    check_sign_in_nonce,
)
from review.errors import (
    CaseConflictError,
    CaseNotFoundError,
    InvalidDecisionError,
    PermissionDeniedError,
    ReviewError,
)
from review.policy import Action, CaseStatus, ReasonCode

HERE = Path(__file__).parent
STATIC = HERE / "static"
SAFE_NEXT = re.compile(r"/console/[A-Za-z0-9_./-]{0,180}")
FRAGMENT_HEADER = "x-console-fetch"  # console.js sets it on its fetches: answer with a fragment or JSON
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages hold case evidence: never in a shared or disk cache
    "X-Frame-Options": "DENY",
}
STATUS_OF: Mapping[type[ReviewError], int] = {CaseNotFoundError: 404, PermissionDeniedError: 403,
                                              CaseConflictError: 409, InvalidDecisionError: 422}


def _asset_versions() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC.iterdir() if p.is_file()}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    versions = _asset_versions()
    env.globals["asset"] = lambda name: f"/console/static/{name}?v={versions.get(name, '0')}"
    env.globals["LABELS"] = LABELS
    env.filters["mask"] = mask
    env.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"
    env.filters["clock"] = lambda dt: dt.strftime("%H:%M:%S") if dt else "—"
    env.filters["stage"] = lambda s: str(s).replace("_", " ")
    env.filters["pct"] = lambda x: f"{100 * float(x):.0f}%"
    return env


templates = Jinja2Templates(env=_environment())


@dataclass(frozen=True, slots=True)
class Visitor:
    session: ConsoleSession
    principal: Principal


def _book(request: Request) -> SessionBook:
    book: SessionBook = request.app.state.console_sessions
    return book


def _wants_fragment(request: Request) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def render(request: Request, name: str, context: dict[str, Any], *, visitor: Visitor | None = None,
           status_code: int = 200, fragment: bool = False) -> Response:
    """A page (which shows and clears the pending flash message) or, with ``fragment``, a piece of one."""
    book = _book(request)
    principal = visitor.principal if visitor else None
    flash = None if fragment else book.read_flash(request)
    base = {"principal": principal, "csrf": visitor.session.csrf if visitor else "", "flash": flash,
            "section": "audit" if name == "audit.html" else "queue",
            "can_work": bool(principal and principal.can(Permission.WORK_CASES)),
            "can_audit": bool(principal and principal.can(Permission.READ_AUDIT)),
            "can_escalated": bool(principal and principal.can(Permission.READ_ESCALATED))}
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code,
                                          headers=dict(SECURITY_HEADERS))
    if not fragment:
        book.clear_flash(request, response)
    return response


def redirect(request: Request, to: str, flash: Flash | None = None) -> Response:
    response = RedirectResponse(to, status_code=303, headers=dict(SECURITY_HEADERS))
    if flash is not None:
        _book(request).set_flash(request, response, flash)
    return response


def _error_page(request: Request, status: int, title: str, text: str) -> Response:
    if _wants_fragment(request):
        return JSONResponse({"detail": text}, status_code=status, headers=dict(SECURITY_HEADERS))
    visitor: Visitor | None = None
    with contextlib.suppress(SignInRequiredError):
        visitor = Visitor(*_book(request).read(request))
    return render(request, "error.html", {"title": title, "text": text}, visitor=visitor, status_code=status)


class ConsoleRoute(APIRoute):
    """Turns the services' and the session's errors into console answers: sign-in redirect, an HTML error
    page, or, for a refused POST that is just a conflict (someone else claimed the case), a flash message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequiredError:
                if _wants_fragment(request):
                    return JSONResponse({"detail": "signed out: sign in again"}, status_code=401)
                back = request.url.path if request.method == "GET" else ""
                response = redirect(request, "/console/sign-in" + (f"?next={quote(back)}" if _safe_next(back) else ""))
                _book(request).clear_session(response)
                return response
            except CsrfError as exc:
                return _error_page(request, 403, "Request refused", str(exc))
            except RequestValidationError as exc:
                if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
                    return _error_page(request, 404, "Not found", "There is no such page or case.")
                names = sorted({str(err.get("loc", ("", "?"))[-1]) for err in exc.errors()})
                return _error_page(request, 422, "Bad request", f"Not valid here: {', '.join(names)}.")
            except (CaseConflictError, InvalidDecisionError) as exc:
                if request.method == "POST" and not _wants_fragment(request):
                    case_id = request.path_params.get("case_id")
                    back = f"/console/cases/{case_id}" if case_id else "/console/queue"
                    return redirect(request, back, Flash("error", str(exc)))
                return _error_page(request, STATUS_OF[type(exc)], "Not possible right now", str(exc))
            except ReviewError as exc:
                status = STATUS_OF.get(type(exc), 400)
                title = {403: "Not allowed", 404: "Not found"}.get(status, "Refused")
                return _error_page(request, status, title, str(exc))

        return route


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def signed_in(request: Request) -> Visitor:
    return Visitor(*_book(request).read(request))


def posted(request: Request, visitor: Annotated[Visitor, Depends(signed_in)],
           csrf_token: Annotated[str | None, Form(max_length=200)] = None) -> Visitor:
    """A signed-in POST carrying this session's CSRF token (form field or header)."""
    check_csrf(request, visitor.session, csrf_token)
    return visitor


VisitorDep = Annotated[Visitor, Depends(signed_in)]
PostedDep = Annotated[Visitor, Depends(posted)]
CaseId = Annotated[str, PathParam(pattern=r"^case-[0-9a-f]{20}$")]
EventId = Annotated[str, PathParam(min_length=1, max_length=128)]


# ---------------------------------------------------------------------------------------------- sign-in
@router.get("")
@router.get("/")
def home() -> Response:
    return RedirectResponse("/console/queue", status_code=303)


def _safe_next(path: str) -> bool:
    """Only a console page of this site: no other host, no scheme, no dot segments, no sign-in loop."""
    return (SAFE_NEXT.fullmatch(path) is not None and ".." not in path and "//" not in path
            and not path.startswith("/console/sign-"))


NextPath = Annotated[str, Query(alias="next", max_length=200)]


@router.get("/sign-in")
def sign_in_page(request: Request, next_path: NextPath = "") -> Response:
    try:
        _book(request).read(request)
        return redirect(request, next_path if _safe_next(next_path) else "/console/queue")
    except SignInRequiredError:
        return _sign_in_form(request, error=None, status=200, next_path=next_path)


def _sign_in_form(request: Request, *, error: str | None, status: int, next_path: str) -> Response:
    book = _book(request)
    nonce = book.sign_in_nonce(request)
    response = render(request, "sign_in.html", {"nonce": nonce, "error": error,
                                                "next": next_path if _safe_next(next_path) else ""},
                      status_code=status)
    book.set_sign_in_nonce(request, response, nonce)
    return response


@router.post("/sign-in")
def sign_in(request: Request, store: StoreDep, token: Annotated[str, Form(max_length=500)] = "",
            csrf_token: Annotated[str | None, Form(max_length=200)] = None,
            next_path: Annotated[str, Form(alias="next", max_length=200)] = "") -> Response:
    check_sign_in_nonce(request, csrf_token)
    principal = authenticate(store=store, token=token.strip())
    if principal is None:
        return _sign_in_form(request, status=401, next_path=next_path,
                             error="That token was not accepted: it is unknown, mistyped or revoked. Paste the "
                                   "whole token (it starts with lgt_) or ask an admin for a new one.")
    book = _book(request)
    session = book.new_session(principal)
    audit_sign(store, principal, "signed_in")
    response = redirect(request, next_path if _safe_next(next_path) else "/console/queue",
                        Flash("ok", f"Signed in as {principal.name} ({principal.role})."))
    book.set_session(request, response, session)
    response.delete_cookie(SIGN_IN_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
def sign_out(request: Request, store: StoreDep, visitor: PostedDep) -> Response:
    book = _book(request)
    book.forget(visitor.session)
    audit_sign(store, visitor.principal, "signed_out")
    response = redirect(request, "/console/sign-in", Flash("ok", "Signed out."))
    book.clear_session(response)
    return response


# ---------------------------------------------------------------------------------------------- queue
def _choice(value: str, allowed: set[str], what: str, problems: list[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        problems.append(f"unknown {what} '{value[:40]}' ignored")
        return None
    return value


@router.get("/queue")
def queue_page(request: Request, store: StoreDep, now: NowDep, visitor: VisitorDep,
               status: Annotated[str, Query(max_length=20)] = "open",
               priority: Annotated[str, Query(max_length=2)] = "",
               stage: Annotated[str, Query(max_length=64)] = "",
               escalated: Annotated[str, Query(max_length=5)] = "",
               offset: Annotated[int, Query(ge=0, le=queue.MAX_OFFSET)] = 0) -> Response:
    principal = visitor.principal
    problems: list[str] = []
    status_v = _choice(status, {s.value for s in CaseStatus}, "status", problems)
    priority_v = _choice(priority, {"1", "2", "3", "4"}, "priority", problems)
    stage_v = _choice(stage, set(pages.STAGE_NAMES), "stage", problems)
    escalated_v = _choice(escalated, {"yes", "no"} if principal.can(Permission.READ_ESCALATED) else {"no"},
                          "escalated filter", problems)
    page = queue.list_cases(store=store, principal=principal, now=now,
                            status=CaseStatus(status_v) if status_v else None,
                            priority=int(priority_v) if priority_v else None, stage=stage_v,
                            escalated=None if escalated_v is None else escalated_v == "yes",
                            limit=queue.MAX_PAGE, offset=offset)
    held: list[pages.QueueRow] = []
    if principal.can(Permission.WORK_CASES):
        mine = queue.list_cases(store=store, principal=principal, now=now, status=CaseStatus.CLAIMED,
                                limit=queue.MAX_PAGE)
        held = pages.queue_rows([c for c in mine.items if c.claimed_by == principal.name], principal, now)
    filters = {"status": status_v or "", "priority": priority_v or "", "stage": stage_v or "",
               "escalated": escalated_v or ""}
    return render(request, "queue.html", {
        "rows": pages.queue_rows(page.items, principal, now), "held": held, "page": page, "filters": filters,
        "problems": problems, "stages": pages.STAGE_NAMES, "statuses": [s.value for s in CaseStatus],
        "now": now}, visitor=visitor)


@router.post("/queue/claim-next")
def claim_next(request: Request, store: StoreDep, now: NowDep, visitor: PostedDep) -> Response:
    claimed = queue.claim_next(store=store, principal=visitor.principal, now=now)
    if claimed is None:
        return redirect(request, "/console/queue", Flash("ok", "Nothing is waiting in your queue."))
    return redirect(request, f"/console/cases/{claimed.case_id}",
                    Flash("ok", f"Claimed {claimed.case_id}: it is yours until {claimed.lease_expires_at:%H:%M} UTC "
                                "and the lease renews while this page is open."))


# ---------------------------------------------------------------------------------------------- case
def _case_response(request: Request, store: StoreDep, now: datetime, visitor: Visitor, case_id: str,
                   window: int, revealed: evidence.TranscriptMessage | None = None) -> Response:
    detail = evidence.case_detail(store=store, principal=visitor.principal, case_id=case_id, now=now, window=window)
    page = pages.case_page(detail, visitor.principal, now)
    if revealed is not None:
        views = tuple(pages.message_view(revealed, older=detail.age.older, younger=detail.age.younger, revealed=True)
                      if v.message.event_id == revealed.event_id else v for v in page.messages)
        page = pages.CasePage(**{**{f: getattr(page, f) for f in page.__slots__}, "messages": views})
    return render(request, "case.html", {"page": page, "case": detail.case, "d": detail,
                                         "lease_seconds": store.lease_seconds, "now": now,
                                         "revealed": revealed.event_id if revealed else None}, visitor=visitor)


@router.get("/cases/{case_id}")
def case_page(request: Request, store: StoreDep, now: NowDep, visitor: VisitorDep, case_id: CaseId,
              window: Annotated[int, Query(ge=1, le=evidence.MAX_WINDOW)] = 50) -> Response:
    return _case_response(request, store, now, visitor, case_id, window)


@router.post("/cases/{case_id}/claim")
def claim(request: Request, store: StoreDep, now: NowDep, visitor: PostedDep, case_id: CaseId) -> Response:
    held = queue.claim_case(store=store, principal=visitor.principal, case_id=case_id, now=now)
    until = f"{held.lease_expires_at:%H:%M} UTC" if held.lease_expires_at else "the lease ends"
    return redirect(request, f"/console/cases/{case_id}",
                    Flash("ok", f"You hold {case_id} until {until}; the lease renews while this page is open."))


@router.post("/cases/{case_id}/release")
def release(request: Request, store: StoreDep, now: NowDep, visitor: PostedDep, case_id: CaseId) -> Response:
    queue.release(store=store, principal=visitor.principal, case_id=case_id, now=now)
    return redirect(request, "/console/queue", Flash("ok", f"Released {case_id} back to the queue."))


@router.post("/cases/{case_id}/heartbeat")
def heartbeat(store: StoreDep, now: NowDep, visitor: PostedDep, case_id: CaseId) -> Response:
    held = queue.heartbeat(store=store, principal=visitor.principal, case_id=case_id, now=now)
    until = held.lease_expires_at.isoformat() if held.lease_expires_at else None
    return JSONResponse({"lease_expires_at": until}, headers=dict(SECURITY_HEADERS))


@router.post("/cases/{case_id}/decision")
def decide(request: Request, store: StoreDep, now: NowDep, visitor: PostedDep, case_id: CaseId,
           action: Annotated[str, Form(max_length=32)] = "",
           reason_code: Annotated[str, Form(max_length=16)] = "",
           note: Annotated[str, Form(max_length=casework.MAX_NOTE)] = "") -> Response:
    """The decision form; the same services as ``POST /v1/cases/{id}/decision``."""
    back = f"/console/cases/{case_id}"
    if action not in {a.value for a in Action}:
        return redirect(request, back, Flash("error", "Choose an action (keys 1–6) before submitting."))
    if reason_code and reason_code not in {c.value for c in ReasonCode}:
        return redirect(request, back, Flash("error", f"Unknown reason code {reason_code[:16]}."))
    code = ReasonCode(reason_code) if reason_code else None
    chosen = Action(action)
    if chosen is Action.ESCALATED:
        casework.escalate_case(store=store, principal=visitor.principal, case_id=case_id, reason_code=code,
                               note=note, now=now)
        return redirect(request, "/console/queue", Flash("ok", f"Escalated {case_id} to the senior queue."))
    if code is None:
        return redirect(request, back, Flash("error", "Choose the policy reason code this decision cites."))
    casework.record_decision(store=store, principal=visitor.principal, case_id=case_id, action=chosen,
                             reason_code=code, note=note, now=now)
    return redirect(request, "/console/queue",
                    Flash("ok", f"Decided {case_id}: {pages.ACTION_LABELS[chosen].lower()} ({code.value})."))


@router.post("/cases/{case_id}/messages/{event_id}/reveal")
def reveal(request: Request, store: StoreDep, now: NowDep, visitor: PostedDep, case_id: CaseId,
           event_id: EventId) -> Response:
    """Show one message unredacted; the reveal is in the audit trail before the text leaves the server."""
    message = reveal_message(store=store, principal=visitor.principal, case_id=case_id, event_id=event_id, now=now)
    if _wants_fragment(request):
        view = pages.message_view(message, older=None, younger=None, revealed=True)
        return render(request, "_message_body.html", {"m": view}, visitor=visitor, fragment=True)
    return _case_response(request, store, now, visitor, case_id, 50, revealed=message)


# ---------------------------------------------------------------------------------------------- audit
@router.get("/audit")
def audit_page(request: Request, store: StoreDep, visitor: VisitorDep,
               after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> Response:
    principal = visitor.principal
    checkpoints = trail.list_checkpoints(store=store, principal=principal, after_seq=0, limit=trail.MAX_PAGE)
    latest = checkpoints[-1].seq if checkpoints else 0
    start = max(0, latest - 25) if after_seq is None else after_seq
    entries = trail.list_entries(store=store, principal=principal, after_seq=start, limit=50)
    return render(request, "audit.html", {
        "checkpoints": list(reversed(checkpoints))[:50], "checkpoint_total": len(checkpoints),
        "entries": entries, "start": start, "older": max(0, start - 50) if start > 0 else None,
        "newer": entries[-1].entry["seq"] if len(entries) == 50 else None}, visitor=visitor)
