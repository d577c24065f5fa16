"""The moderator API (FastAPI, under /v1). Routers translate HTTP to the keyword-only review services and back;
``create_app`` wires them to one ``SqlCaseStore``."""

from review.api.app import create_app

__all__ = ["create_app"]
