"""``create_app``: routers, error mapping, health and metrics for one ``SqlCaseStore``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from review.api import cases, trail
from review.api.deps import StoreDep, reject_unknown_query
from review.api.schemas import HealthOut
from review.db import current_revision, head_revision
from review.errors import (
    CaseConflictError,
    CaseNotFoundError,
    InvalidDecisionError,
    PermissionDeniedError,
    ReviewError,
)
from review.metrics import review_registry
from review.store import SqlCaseStore, utc_now

STATUS: dict[type[ReviewError], int] = {
    CaseNotFoundError: 404,
    PermissionDeniedError: 403,
    CaseConflictError: 409,
    InvalidDecisionError: 422,
}


def create_app(store: SqlCaseStore, *, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    app = FastAPI(
        title="Lifeguard review API",
        version="1",
        description="Review queue, case evidence, moderator decisions and the verifiable audit trail. "
                    "Authenticate with `Authorization: Bearer <token>` (`lifeguard token create`).",
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.store = store
    app.state.clock = clock
    registry = review_registry(store, clock)

    @app.exception_handler(ReviewError)
    def _review_error(_request: Request, exc: ReviewError) -> JSONResponse:
        if isinstance(exc, InvalidDecisionError):  # same shape as FastAPI's own 422 answers
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "policy_violation"}]},
                                status_code=422)
        return JSONResponse({"detail": str(exc)}, status_code=STATUS.get(type(exc), 400))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette answers 405 with the methods of the first route matching the path only; list them all."""
        if exc.status_code == 405:
            routes = [r for r in (*cases.router.routes, *trail.router.routes, *app.routes) if isinstance(r, APIRoute)]
            methods = {m for r in routes if r.matches(request.scope)[0] is not Match.NONE for m in r.methods or ()}
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(sorted(methods))})
        return await http_exception_handler(request, exc)

    @app.exception_handler(OperationalError)
    def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        return JSONResponse({"detail": "the case database is unavailable; retry shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    app.include_router(cases.router)
    app.include_router(trail.router)
    from review.console import mount_console  # here: review.console imports review.api's dependencies
    mount_console(app)  # the browser console at /console/, over the same services

    @app.get("/healthz", response_model=HealthOut, tags=["ops"])
    def healthz() -> HealthOut:
        """Liveness: the process answers."""
        return HealthOut(status="ok")

    @app.get("/readyz", response_model=HealthOut, tags=["ops"], responses={503: {"model": HealthOut}})
    def readyz(store: StoreDep) -> HealthOut | JSONResponse:
        """Readiness: the database answers and its schema is at the code's migration head."""
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = current_revision(store.engine)
        except (SQLAlchemyError, RuntimeError) as exc:
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
        if current != head_revision():
            return JSONResponse({"status": "unavailable", "detail": f"schema at {current}, code needs "
                                 f"{head_revision()}: run `lifeguard db upgrade`"}, status_code=503)
        return HealthOut(status="ok")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics() -> Response:
        """Prometheus: queue depth by priority, oldest case age, SLA breaches, decisions by action, time to
        action."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
