"""The moderator console: server-rendered pages at ``/console/`` over the same review services as ``/v1``.

``mount_console(app)`` adds the routes, the static assets (all in this package: works air-gapped) and the
session book. See ``routes`` for the pages, ``session`` for sign-in and CSRF, ``redaction`` for PII.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from review.console.routes import STATIC, router
from review.console.session import SessionBook


def mount_console(app: FastAPI) -> None:
    """Mount on an app whose ``state.store`` is the ``SqlCaseStore`` (``review.api.create_app`` does this)."""
    app.state.console_sessions = SessionBook(app.state.store)
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")


__all__ = ["mount_console"]
