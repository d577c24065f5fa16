"""What review services raise. Each maps to one HTTP status in the API (see ``review.api``)."""

from __future__ import annotations


class ReviewError(Exception):
    """Base of the review service errors; the message is safe to show to the caller."""


class CaseNotFoundError(ReviewError):
    """No case with that id (404)."""


class PermissionDeniedError(ReviewError):
    """The caller's role may not do this (403)."""


class CaseConflictError(ReviewError):
    """The case is not in a state that allows this: held by someone else, lease lapsed, already decided (409)."""


class InvalidDecisionError(ReviewError):
    """The request is well-formed but breaks a policy rule, e.g. a dismissal citing a violation code (422)."""
