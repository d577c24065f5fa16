"""Keyed pseudonyms for exports: HMAC-SHA256 with the deployment's pseudonym key (``audit.keys``).

Each use has its own domain label, so a statement id can never be matched against an audit-trail actor
pseudonym or a subject reference even though all come from one key. ``key_id`` names the key without revealing
it; manifests record it so an export can be tied to the key that produced it after a rotation (see
compliance/README.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from audit.keys import load_pseudonym_key
from pipeline.settings import Settings

STATEMENT_DOMAIN = "lifeguard/dsa-statement/v1"
SUBJECT_DOMAIN = "lifeguard/export-subject/v1"
KEY_ID_DOMAIN = "lifeguard/pseudonym-key-id/v1"


@dataclass(frozen=True, slots=True)
class ExportPseudonyms:
    key: bytes

    def _digest(self, domain: str, *parts: str) -> str:
        message = "\x1f".join((domain, *parts)).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    @property
    def key_id(self) -> str:
        return self._digest(KEY_ID_DOMAIN)[:16]

    def statement_puid(self, kind: str, case_id: str, reference: str) -> str:
        """The platform-unique id of one statement of reasons: stable per decision, unlinkable to the user."""
        return f"lg-sor-{self._digest(STATEMENT_DOMAIN, kind, case_id, reference)[:40]}"

    def subject_ref(self, user_id: str) -> str:
        """A file-name-safe reference to a reported person (NCMEC bundle folder names)."""
        return f"subject-{self._digest(SUBJECT_DOMAIN, user_id)[:20]}"


def export_pseudonyms(settings: Settings) -> ExportPseudonyms:
    return ExportPseudonyms(load_pseudonym_key(settings))


__all__ = ["ExportPseudonyms", "export_pseudonyms"]
