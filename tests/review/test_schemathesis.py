"""Schemathesis against the OpenAPI schema, in-process over ASGI, with an admin token: schema-valid and
schema-violating requests (on random and on real case ids) never get a 5xx, every status is documented,
every response matches its schema, valid requests are accepted and invalid ones rejected."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from review.access import Role, create_token
from review.api import create_app
from review.store import SqlCaseStore
from tests.review import conversations as conv
from tests.review.databases import FakeClock

MAX_EXAMPLES = 12


def fuzz(strategy: Any, headers: dict[str, str], real_id: Callable[[], str] | None) -> None:
    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def check(case: schemathesis.Case) -> None:
        if real_id is not None:
            case.path_parameters = {**(case.path_parameters or {}), "case_id": real_id()}
        case.call_and_validate(headers=headers)

    check()


@pytest.mark.slow
def test_api_schema_fuzz(store: SqlCaseStore, clock: FakeClock, tmp_path: Path) -> None:
    conv.run(conv.write(tmp_path / "e.jsonl", conv.mixed_queue()), sink=store)
    token = create_token(store=store, role=Role.ADMIN, name="fuzzer", now=clock())[1]
    real_ids = itertools.cycle([c["case_id"] for c in store.cases_report()])
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(store, clock=clock))
    headers = {"Authorization": f"Bearer {token}"}
    ran: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, real in ((GenerationMode.POSITIVE, False), (GenerationMode.POSITIVE, True),
                           (GenerationMode.NEGATIVE, False)):
            if real and "{case_id}" not in operation.path:
                continue

            swap = (lambda: next(real_ids)) if real else None
            try:
                fuzz(operation.as_strategy(generation_mode=mode), headers, swap)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong in a parameterless GET
                continue
            ran.append(f"{operation.label} {mode.value}{' real ids' if real else ''}")
    assert len(ran) >= 20, ran
