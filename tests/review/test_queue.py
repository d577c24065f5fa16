"""Queue order, leases (claim, heartbeat, lapse, release), SLA clocks, and exclusivity under contention."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from review.access import Principal, Role
from review.casework import escalate_case, record_decision
from review.errors import CaseConflictError, InvalidDecisionError, PermissionDeniedError
from review.policy import SLA_TARGETS, Action, ReasonCode
from review.queue import claim_case, claim_next, heartbeat, list_cases, release
from review.store import SqlCaseStore, open_case_store
from tests.review import conversations as conv
from tests.review.databases import FakeClock, settings_for

MIA = Principal("tok-1", "mia", Role.MODERATOR)
MO = Principal("tok-2", "mo", Role.MODERATOR)
SAM = Principal("tok-3", "sam", Role.SENIOR)
AUDITOR = Principal("tok-4", "ada", Role.AUDITOR)


@pytest.fixture
def queued(store: SqlCaseStore, tmp_path: Path) -> dict[str, str]:
    """conversation id -> case id for the mixed queue."""
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    return {c["conversation_id"]: c["case_id"] for c in store.cases_report()}


def test_queue_order_and_escalation_visibility(store: SqlCaseStore, clock: FakeClock,
                                               queued: dict[str, str]) -> None:
    senior = list_cases(store=store, principal=SAM, now=clock())
    # priority 1 first; within it the higher risk; then priority 2, then 3
    assert [c.conversation_id for c in senior.items] == ["dm-meet", "dm-small", "dm-secret", "dm-mild"]
    assert [c.priority for c in senior.items] == [1, 1, 2, 3]
    assert senior.items[0].escalated  # the meeting request rule escalates
    moderator = list_cases(store=store, principal=MIA, now=clock())
    assert [c.conversation_id for c in moderator.items] == ["dm-small", "dm-secret", "dm-mild"]
    with pytest.raises(PermissionDeniedError):
        list_cases(store=store, principal=MIA, now=clock(), escalated=True)
    meeting = list_cases(store=store, principal=SAM, now=clock(), stage="meeting_request")
    assert [c.conversation_id for c in meeting.items] == ["dm-meet"] and meeting.total == 1
    secrecy = list_cases(store=store, principal=SAM, now=clock(), stage="secrecy", limit=2)
    assert (secrecy.total, len(secrecy.items), secrecy.next_offset) == (4, 2, 2)
    assert list_cases(store=store, principal=SAM, now=clock(), stage="secre").total == 0  # whole names only
    page = list_cases(store=store, principal=SAM, now=clock(), limit=2, offset=0)
    assert (page.total, len(page.items), page.next_offset) == (4, 2, 2)
    assert list_cases(store=store, principal=SAM, now=clock(), limit=2, offset=2).next_offset is None
    with pytest.raises(ValueError):
        list_cases(store=store, principal=SAM, now=clock(), limit=101)


def test_youngest_band_breaks_ties(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    events = [*conv.conversation("dm-teen", conv.SECRECY, adult="a1", child="k1", band="13_15"),
              *conv.conversation("dm-kid", conv.SECRECY, adult="a2", child="k2", band="9_12")]
    conv.run(conv.write(tmp_path / "e.jsonl", events), sink=store)
    items = list_cases(store=store, principal=MIA, now=clock()).items
    assert items[0].conversation_id == "dm-kid"


def test_lease_lifecycle(store: SqlCaseStore, clock: FakeClock, queued: dict[str, str]) -> None:
    case_id = queued["dm-secret"]
    held = claim_case(store=store, principal=MIA, case_id=case_id, now=clock())
    assert (held.status, held.claimed_by) == ("claimed", "mia")
    with pytest.raises(CaseConflictError, match="held by another moderator"):
        claim_case(store=store, principal=MO, case_id=case_id, now=clock())
    clock.advance(50)
    heartbeat(store=store, principal=MIA, case_id=case_id, now=clock())  # lease now ends at +110 s
    clock.advance(50)
    with pytest.raises(CaseConflictError):
        claim_case(store=store, principal=MO, case_id=case_id, now=clock())
    with pytest.raises(CaseConflictError, match="you do not hold"):
        heartbeat(store=store, principal=MO, case_id=case_id, now=clock())
    clock.advance(61)  # lapsed: back in the queue without anyone acting
    assert case_id in [c.case_id for c in list_cases(store=store, principal=MO, now=clock(), status="open").items]
    with pytest.raises(CaseConflictError, match="lapsed"):
        heartbeat(store=store, principal=MIA, case_id=case_id, now=clock())
    with pytest.raises(CaseConflictError, match="lapsed"):
        record_decision(store=store, principal=MIA, case_id=case_id, action=Action.WARNED,
                        reason_code=ReasonCode.GROOMING_SECRECY, note="", now=clock())
    taken = claim_case(store=store, principal=MO, case_id=case_id, now=clock())
    assert taken.claimed_by == "mo"
    released = release(store=store, principal=MO, case_id=case_id, now=clock())
    assert (released.status, released.claimed_by) == ("open", None)


def test_sla_clocks(store: SqlCaseStore, clock: FakeClock, queued: dict[str, str]) -> None:
    created = clock()
    case_id = queued["dm-secret"]  # priority 2
    first_target, decision_target = SLA_TARGETS[2]
    [item] = [c for c in list_cases(store=store, principal=MIA, now=clock()).items if c.case_id == case_id]
    assert item.sla.first_review_due_at == created + first_target
    assert item.sla.decision_due_at == created + decision_target
    clock.advance(first_target.total_seconds() + 1)
    [item] = [c for c in list_cases(store=store, principal=MIA, now=clock()).items if c.case_id == case_id]
    assert item.sla.first_review_breached and not item.sla.decision_breached
    claimed = claim_case(store=store, principal=MIA, case_id=case_id, now=clock())
    assert claimed.sla.time_to_first_review_seconds == first_target.total_seconds() + 1
    clock.advance(10)
    done = record_decision(store=store, principal=MIA, case_id=case_id, action=Action.WARNED,
                           reason_code=ReasonCode.GROOMING_SECRECY, note="first warning", now=clock())
    assert done.sla.time_to_decision_seconds == first_target.total_seconds() + 11
    assert not done.sla.decision_breached


def test_decision_rules(store: SqlCaseStore, clock: FakeClock, queued: dict[str, str]) -> None:
    case_id = queued["dm-small"]
    with pytest.raises(CaseConflictError, match="claim it first"):
        record_decision(store=store, principal=MIA, case_id=case_id, action=Action.BANNED,
                        reason_code=ReasonCode.GROOMING_SECRECY, note="", now=clock())
    claim_case(store=store, principal=MIA, case_id=case_id, now=clock())
    with pytest.raises(InvalidDecisionError, match="dismissal needs a no-violation code"):
        record_decision(store=store, principal=MIA, case_id=case_id, action=Action.DISMISSED,
                        reason_code=ReasonCode.GROOMING_SECRECY, note="", now=clock())
    with pytest.raises(InvalidDecisionError, match="needs the violated policy"):
        record_decision(store=store, principal=MIA, case_id=case_id, action=Action.BANNED,
                        reason_code=ReasonCode.NO_VIOLATION, note="", now=clock())
    with pytest.raises(PermissionDeniedError, match="NCMEC"):
        record_decision(store=store, principal=MIA, case_id=case_id, action=Action.REPORTED_NCMEC,
                        reason_code=ReasonCode.GROOMING_SECRECY, note="", now=clock())
    escalated = escalate_case(store=store, principal=MIA, case_id=case_id, reason_code=None,
                              note="looks like an adult posing as a teen", now=clock())
    assert (escalated.status, escalated.escalated) == ("open", True)
    with pytest.raises(PermissionDeniedError):
        claim_case(store=store, principal=MIA, case_id=case_id, now=clock())
    with pytest.raises(PermissionDeniedError):
        claim_case(store=store, principal=AUDITOR, case_id=case_id, now=clock())
    claim_case(store=store, principal=SAM, case_id=case_id, now=clock())
    reported = record_decision(store=store, principal=SAM, case_id=case_id, action=Action.REPORTED_NCMEC,
                               reason_code=ReasonCode.MEETING, note="bundle filed", now=clock())
    assert (reported.status, reported.outcome) == ("closed", "reported_ncmec")
    with pytest.raises(CaseConflictError):
        claim_case(store=store, principal=SAM, case_id=case_id, now=clock())


def test_claim_next_follows_queue_order(store: SqlCaseStore, clock: FakeClock, queued: dict[str, str]) -> None:
    got = [claim_next(store=store, principal=MIA, now=clock()) for _ in range(4)]
    assert [c.conversation_id if c else None for c in got] == ["dm-small", "dm-secret", "dm-mild", None]
    senior = claim_next(store=store, principal=SAM, now=clock())
    assert senior is not None and senior.conversation_id == "dm-meet"


@pytest.mark.services
def test_many_concurrent_claimers_never_share_a_case(pg_backend: str, tmp_path: Path,
                                                     record_property: pytest.RecordProperty) -> None:
    """24 moderators (threads, each its own connection pool) drain a queue of 40 cases with claim_next while
    another 24 race for one case id: every case is held by exactly one moderator."""
    settings = settings_for(pg_backend, tmp_path / "data", lease_seconds=600)
    seed = open_case_store(settings)
    conv.run(conv.write(tmp_path / "e.jsonl", conv.many(40)), sink=seed)
    # The last case in queue order: the drainers reach it last, so the racers really contend for it.
    contested = list_cases(store=seed, principal=SAM, now=seed.clock(), limit=100).items[-1].case_id
    stores = [open_case_store(settings) for _ in range(4)]
    claimers = 24
    barrier = threading.Barrier(claimers * 2)
    drained: list[tuple[str, str]] = []
    contested_wins: list[str] = []
    conflicts: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def drain(n: int) -> None:
        me = Principal(f"tok-{n}", f"mod-{n}", Role.MODERATOR)
        try:
            barrier.wait()
            while (got := claim_next(store=stores[n % 4], principal=me, now=seed.clock())) is not None:
                with lock:
                    drained.append((got.case_id, me.name))
        except BaseException as exc:
            errors.append(exc)

    def race(n: int) -> None:
        me = Principal(f"tok-r{n}", f"racer-{n}", Role.MODERATOR)
        try:
            barrier.wait()
            claim_case(store=stores[n % 4], principal=me, case_id=contested, now=seed.clock())
            with lock:
                contested_wins.append(me.name)
        except CaseConflictError:
            with lock:
                conflicts.append(me.name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(claimers)]
    threads += [threading.Thread(target=race, args=(i,)) for i in range(claimers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert not errors, errors
    claimed = Counter(case_id for case_id, _ in drained)
    assert all(n == 1 for n in claimed.values()), claimed.most_common(3)
    contested_by_drainers = claimed.get(contested, 0)
    assert len(contested_wins) + contested_by_drainers == 1
    assert len(conflicts) == claimers - len(contested_wins)
    assert len(claimed) + len(contested_wins) == 40
    held = {c.case_id: c.claimed_by for c in list_cases(store=seed, principal=SAM, now=seed.clock(),
                                                       status="claimed", limit=100).items}
    assert len(held) == 40
    assert all(held[case_id] == name for case_id, name in drained)
    record_property("claims_per_second", round(40 / elapsed, 1))
    record_property("workers", claimers * 2)
    print(f"\n48 claimers, 40 cases: {len(claimed)} drained + {len(contested_wins)} race winner, "
          f"{len(conflicts)} refused, 0 double claims, {elapsed:.2f} s")
    for s in [seed, *stores]:
        s.close()
