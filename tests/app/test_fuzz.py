"""Schemathesis against the app's own OpenAPI schema over real HTTP (uvicorn on
loopback): every operation with generated valid and invalid input, then stateful runs
along the schema's links (a new session, then reading, changing, resetting and clicking
in it, with the session's cookie carried along). Bounded budget; no 500, nothing outside
the schema, invalid input refused, and every operation reached with a 2xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.app.conftest import migrated, uvicorn_process

BUDGET = settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
RULES_BEYOND_THE_SCHEMA = [schemathesis.checks.positive_data_acceptance]
"""A schema-valid request may still be refused with a 4xx naming the problem: some rules
span fields (exactly one of user or items; the "more" alphas add up to at most 1) or
need the bundle (an unknown id). Every other default check stays on: no 5xx, documented
status codes and content types, responses that match their schema, schema-invalid input
refused (negative_data_rejection)."""


NOT_THE_SESSION = [schemathesis.checks.ensure_resource_availability]
"""After POST /api/v1/sessions, a 404 from PUT .../knobs names an unknown knob or concept
in the body (the API answers unknown ids with 404), not a missing session; that the
session itself is there is asserted below: its GET, PUT and reset answer 2xx."""


@pytest.fixture(scope="module")
def api_schema(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[schemathesis.BaseSchema]:
    url = migrated(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'knobs.db'}")
    with uvicorn_process(bundle_dir, url) as (base, _):
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


@pytest.mark.slow
def test_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    statuses: Counter[tuple[str, int]] = Counter()
    inputless: set[str] = set()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @BUDGET
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: schemathesis.Case) -> None:
                response = case.call_and_validate(excluded_checks=RULES_BEYOND_THE_SCHEMA)
                statuses[(case.operation.label, response.status_code // 100)] += 1

            try:
                fuzz()
            except Unsatisfiable:           # no input to get wrong (GET /healthz)
                assert mode is GenerationMode.NEGATIVE
                inputless.add(operation.label)
    assert not [k for k in statuses if k[1] == 5]
    refused = {label for label, kind in statuses if kind == 4}
    assert refused >= {op.label for op in operations} - inputless    # invalid input: 4xx
    assert len(inputless) <= 3


@pytest.mark.slow
def test_stateful_along_the_links(api_schema: schemathesis.BaseSchema) -> None:
    links = api_schema.raw_schema["paths"]["/api/v1/sessions"]["post"]["responses"]["201"]
    assert {"GetSession", "SetKnobs", "Reset", "Click"} <= set(links["links"])
    reached: Counter[tuple[str, int]] = Counter()
    base = api_schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            self.http = requests.Session()      # one visitor per scenario: its cookie
            super().setup()

        def teardown(self) -> None:
            self.http.close()
            super().teardown()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"session": self.http}

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            reached[(case.operation.label, response.status_code // 100)] += 1
            case.validate_response(response, additional_checks=additional_checks,
                                   excluded_checks=[*RULES_BEYOND_THE_SCHEMA,
                                                    *NOT_THE_SESSION],
                                   transport_kwargs=kwargs or None, recorder=self.recorder)

    Machine.run(settings=settings(max_examples=60, stateful_step_count=6, deadline=None,
                                  derandomize=True, suppress_health_check=list(HealthCheck)))
    assert not [k for k in reached if k[1] == 5]
    linked = ("GET /api/v1/sessions/{sid}", "PUT /api/v1/sessions/{sid}/knobs",
              "POST /api/v1/sessions/{sid}/reset", "POST /api/v1/sessions/{sid}/events")
    assert reached[("POST /api/v1/sessions", 2)] > 0
    # a link followed with the session's cookie: only its owner gets a 2xx there
    assert sum(reached[(label, 2)] for label in linked) > 0, sorted(reached.items())
