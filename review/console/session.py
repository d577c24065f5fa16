"""Console sign-in: an API token is exchanged once for a signed session cookie; every form carries a CSRF token.

The cookie holds ``{sid, tid, csrf, exp}`` (session id, token *id*, CSRF secret, expiry), signed with
HMAC-SHA256 under a key derived from the pseudonym key (``LIFEGUARD_PSEUDONYM_KEY`` or the file under
``data_dir``, see ``audit.keys``). So API processes that share that key accept each other's sessions, nothing
is stored server-side, and the token itself never leaves the sign-in request. Each request re-reads the token
row, so revoking a token ends its console sessions at once; rotating the pseudonym key signs everyone out.
Sign-out clears the cookie and refuses its session id in this process until it would have expired; another
process would still accept a stolen copy until then, which is why a session lasts one shift at most.

CSRF: the session's secret must come back in the ``csrf_token`` form field (or the ``X-CSRF-Token`` header for
the console's own fetches) on every POST, and a POST whose ``Origin`` names another site is refused. The
sign-in form, which has no session yet, uses a double-submit nonce cookie instead. Cookies are HttpOnly,
``SameSite=Strict``, path ``/console``, and ``Secure`` whenever the request arrived over https.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from audit.log import PendingEntry
from review.access import Principal, principal_by_token_id
from review.store import SqlCaseStore

SESSION_COOKIE = "lg_console"
SIGN_IN_COOKIE = "lg_console_signin"  # double-submit nonce for the sign-in form
FLASH_COOKIE = "lg_console_flash"
COOKIE_PATH = "/console"
SESSION_SECONDS = 10 * 3600  # one shift
SIGN_IN_NONCE_SECONDS = 3600
FLASH_SECONDS = 120
KEY_LABEL = b"lifeguard/console-session/v1"


class SignInRequiredError(Exception):
    """No valid console session (none, tampered, expired, signed out or its token revoked): sign in again."""


class CsrfError(Exception):
    """A POST without this session's CSRF token, or from another origin (403)."""


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    sid: str
    token_id: str
    csrf: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Flash:
    kind: str  # "ok" or "error"
    text: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    """``base64(json) . base64(hmac)``; ``purpose`` is signed too, so a flash cookie never passes as a session."""

    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, KEY_LABEL, hashlib.sha256).digest()

    def _mac(self, purpose: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}:{body}".encode(), hashlib.sha256).digest())

    def dumps(self, purpose: str, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(purpose, body)}"

    def loads(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (binascii.Error, ValueError):
            return None
        return payload if isinstance(payload, dict) else None


class SessionBook:
    """Signs and reads console cookies; remembers the sessions signed out in this process."""

    def __init__(self, store: SqlCaseStore) -> None:
        self.store = store
        self.signer = CookieSigner(store.audit.pseudonyms.key)
        self._signed_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def new_session(self, principal: Principal) -> ConsoleSession:
        return ConsoleSession(secrets.token_urlsafe(16), principal.token_id, secrets.token_urlsafe(32),
                              int(time.time()) + SESSION_SECONDS)

    def read(self, request: Request) -> tuple[ConsoleSession, Principal]:
        payload = self.signer.loads("session", request.cookies.get(SESSION_COOKIE))
        if payload is None:
            raise SignInRequiredError("no console session")
        try:
            session = ConsoleSession(str(payload["sid"]), str(payload["tid"]), str(payload["csrf"]),
                                     int(payload["exp"]))
        except (KeyError, TypeError, ValueError):
            raise SignInRequiredError("malformed console session") from None
        now = int(time.time())
        with self._lock:
            if session.expires_at < now or session.sid in self._signed_out:
                raise SignInRequiredError("console session expired or signed out")
        principal = principal_by_token_id(store=self.store, token_id=session.token_id)
        if principal is None:
            raise SignInRequiredError("the session's token was revoked")
        return session, principal

    def forget(self, session: ConsoleSession) -> None:
        now = int(time.time())
        with self._lock:
            self._signed_out = {sid: exp for sid, exp in self._signed_out.items() if exp >= now}
            self._signed_out[session.sid] = session.expires_at

    # ----------------------------------------------------------------- cookies
    @staticmethod
    def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    def set_session(self, request: Request, response: Response, session: ConsoleSession) -> None:
        value = self.signer.dumps("session", {"sid": session.sid, "tid": session.token_id, "csrf": session.csrf,
                                              "exp": session.expires_at})
        self._set(request, response, SESSION_COOKIE, value, SESSION_SECONDS)

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

    @staticmethod
    def sign_in_nonce(request: Request) -> str:
        """The sign-in form's double-submit nonce: the browser's, or a fresh one."""
        nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
        return nonce if 32 <= len(nonce) <= 64 else secrets.token_urlsafe(32)

    def set_sign_in_nonce(self, request: Request, response: Response, nonce: str) -> None:
        self._set(request, response, SIGN_IN_COOKIE, nonce, SIGN_IN_NONCE_SECONDS)

    def set_flash(self, request: Request, response: Response, flash: Flash) -> None:
        value = self.signer.dumps("flash", {"kind": flash.kind, "text": flash.text[:500]})
        self._set(request, response, FLASH_COOKIE, value, FLASH_SECONDS)

    def read_flash(self, request: Request) -> Flash | None:
        payload = self.signer.loads("flash", request.cookies.get(FLASH_COOKIE))
        return None if payload is None else Flash(str(payload.get("kind", "ok")), str(payload.get("text", "")))

    @staticmethod
    def clear_flash(request: Request, response: Response) -> None:
        if request.cookies.get(FLASH_COOKIE) is not None:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (``Origin`` or ``Sec-Fetch-Site``).
    Hosts are compared without the scheme, so a TLS-terminating proxy in front does not refuse every form."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in {"same-origin", "none"}


def check_csrf(request: Request, session: ConsoleSession, sent: str | None) -> None:
    token = sent or request.headers.get("x-csrf-token") or ""
    if not token or not hmac.compare_digest(token, session.csrf):
        raise CsrfError("this form is missing its security token or it has expired: reload the page and retry")
    if not same_origin(request):
        raise CsrfError("the request came from another site")


def check_sign_in_nonce(request: Request, sent: str | None) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE) or ""
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        raise CsrfError("the sign-in form expired: reload the page and sign in again")
    if not same_origin(request):
        raise CsrfError("the request came from another site")


def audit_sign(store: SqlCaseStore, principal: Principal, action: str) -> None:
    """``console.signed_in`` / ``console.signed_out``: who held the console, and when."""
    with store.transaction() as session:
        store.audit.append(session.connection(), [PendingEntry(
            f"console.{action}", f"token:{principal.token_id}", actor_id=principal.name,
            payload={"token_id": principal.token_id, "role": principal.role.value})])
