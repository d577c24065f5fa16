"""Request-scoped dependencies: the store, the clock and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from review.access import Principal, authenticate
from review.api.schemas import ErrorOut
from review.store import SqlCaseStore

bearer = HTTPBearer(auto_error=False, description="An API token from `lifeguard token create`.")


def get_store(request: Request) -> SqlCaseStore:
    store: SqlCaseStore = request.app.state.store
    return store


def get_now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """A misspelt filter (``?statuss=open``) must not silently widen a listing: unknown query parameters are
    a 422 naming them."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise RequestValidationError([{"loc": ("query", name), "type": "extra_forbidden", "input": None,
                                       "msg": f"unknown query parameter (allowed: {allowed})"} for name in unknown])


def get_principal(
    store: Annotated[SqlCaseStore, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """401 for a missing or unknown token (the caller is not identified); 403 is the services' answer when an
    identified caller's role may not do something."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(store=store, token=credentials.credentials)
    if principal is None:
        raise HTTPException(401, "invalid or revoked token",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return principal


StoreDep = Annotated[SqlCaseStore, Depends(get_store)]
NowDep = Annotated[datetime, Depends(get_now)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response docs for the error statuses a route may return."""
    text = {400: "The body could not be parsed (e.g. not UTF-8)",
            401: "Missing, unknown or revoked token",
            403: "The token's role may not do this",
            404: "No such case",
            409: "The case is not in a state that allows this"}
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}
