"""Report periods and instants given on the command line. All days are UTC days; both ends are included."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from compliance.errors import PeriodError


@dataclass(frozen=True, slots=True)
class Period:
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.last_day + timedelta(days=1), time(0), tzinfo=UTC)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def to_json(self) -> dict[str, str]:
        return {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()}


def parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise PeriodError(f"{option}: {value!r} is not a date (expected YYYY-MM-DD, e.g. 2026-03-01)") from None


def parse_period(first: str, last: str) -> Period:
    period = Period(parse_day(first, "--from"), parse_day(last, "--to"))
    if period.first_day > period.last_day:
        raise PeriodError(f"--from {period.first_day} is after --to {period.last_day}: the period would be empty")
    return period


def parse_instant(value: str, option: str = "--now") -> datetime:
    """An RFC 3339 date-time with an offset (``Z`` allowed), or a bare date meaning its midnight UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"{option}: {value!r} is not a date-time (expected e.g. 2027-03-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise PeriodError(f"{option}: {value!r} has no UTC offset (add Z or +00:00)")
    return parsed.astimezone(UTC)


def parse_stored_ts(value: str) -> datetime:
    """A timestamp as the case store keeps event times (ISO 8601 strings)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


__all__ = ["Period", "parse_day", "parse_instant", "parse_period", "parse_stored_ts"]
