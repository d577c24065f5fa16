"""What the compliance exports and the retention purge raise. Every message says what the operator should do."""

from __future__ import annotations


class ComplianceError(Exception):
    """Base of the compliance errors; the message is safe to print to the operator."""


class PeriodError(ComplianceError):
    """A --from/--to/--now value is not a valid date or the range is empty. Operators: give dates as
    YYYY-MM-DD (UTC days, both ends included) with --from on or before --to."""


class ReportCaseError(ComplianceError):
    """The case asked for with --case does not exist or was not decided ``reported_ncmec``. Operators: take
    the case id from the review queue (case-...) and check its outcome."""


class OutputDirError(ComplianceError):
    """The output directory cannot be written, or holds files that are not a previous export of the same kind.
    Operators: give an empty or new directory (or the directory of an earlier export of this kind)."""


class StatementInvalidError(ComplianceError):
    """A built statement of reasons breaks the DSA field rules. Nothing was written. This is a bug in the
    mapping or a settings value outside the enumerations (e.g. a territorial_scope code outside the EEA):
    fix LIFEGUARD_TERRITORIAL_SCOPE or report the listed problems."""


class PersonalDataLeakError(ComplianceError):
    """An export meant to be free of personal data contains a user id or message text. Nothing was
    written. This is a bug: report it with the export kind and the field named."""


class ReferenceDataError(ComplianceError):
    """The vendored DSA reference files (compliance/reference/) are missing or malformed. Operators: restore
    them from the repository."""
