"""Schemathesis against the app's own OpenAPI schema over real HTTP (uvicorn on
loopback): every operation with generated valid and invalid input, then stateful runs
along the schema's links (a new session, then reading, changing, resetting and clicking
in it). Bounded budget; no 500, nothing outside the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.app.conftest import migrated, uvicorn_process

BUDGET = settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))


RULES_BEYOND_THE_SCHEMA = [schemathesis.checks.positive_data_acceptance]
"""A schema-valid request may still be refused with a 4xx naming the problem: some rules
span fields (exactly one of user or items; the "more" alphas add up to at most 1) or
need the bundle (an unknown id). Every other default check stays on: no 5xx, documented
status codes and content types, responses that match their schema, schema-invalid input
refused."""


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
    for operation in operations:

        @BUDGET
        @given(case=operation.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(excluded_checks=RULES_BEYOND_THE_SCHEMA)

        fuzz()


@pytest.mark.slow
def test_stateful_along_the_links(api_schema: schemathesis.BaseSchema) -> None:
    links = api_schema.raw_schema["paths"]["/api/v1/sessions"]["post"]["responses"]["201"]
    assert {"GetSession", "SetKnobs", "Reset", "Click"} <= set(links["links"])
    base = api_schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, additional_checks=additional_checks,
                                   excluded_checks=RULES_BEYOND_THE_SCHEMA,
                                   transport_kwargs=kwargs or None, recorder=self.recorder)

    Machine.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None,
                                  derandomize=True, suppress_health_check=list(HealthCheck)))
