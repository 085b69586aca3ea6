"""Warm knob changes batched per event-loop round (app/rounds.py): the requests ready in
one round are answered by one `Engine.recommend_many`, each with the very bytes it gets
alone; bad requests in the same round get their own 404 / 422; a batch that fails is
answered job by job."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.engine import Job
from app.main import create_app
from app.settings import Settings

BODIES: list[dict[str, Any]] = [
    {"user": u, "n": n, "knobs": knobs}
    for u, n, knobs in [
        (1, 20, [{"neuron": 3, "alpha": 0.4}]),
        (2, 10, [{"neuron": 5, "alpha": 0.3, "direction": "less"}]),
        (3, 20, []),
        (1, 5, [{"neuron": 7, "alpha": 0.2}, {"neuron": 3, "alpha": 0.7}]),
        (4, 20, [{"neuron": 0, "alpha": 1.0, "direction": "less"},
                 {"neuron": 1, "alpha": 0.5}]),
    ]] + [{"items": [3, 5, 8], "n": 20, "knobs": [{"neuron": 2, "alpha": 0.6}]}]
BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"user": 999999, "knobs": []}, 404, "unknown user 999999"),
    ({"user": 1, "knobs": [{"neuron": 4096, "alpha": 0.2}]}, 404, "unknown knob 4096"),
    ({"user": 1, "knobs": [{"neuron": 1, "alpha": 1.5}]}, 422, "alpha"),
    ({"user": 1, "n": 0}, 422, "n"),
]


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/recommendations", content=json.dumps(body),
                             headers={"Content-Type": "application/json"})


async def alone_then_together(app: FastAPI, bodies: list[dict[str, Any]]
                              ) -> tuple[list[httpx.Response], list[httpx.Response],
                                         list[int]]:
    """Each body posted alone (which also warms its user), then all in one round: the
    answers, and the sizes of the batches the round ran."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            alone = [await post(c, b) for b in bodies]
            before = len(app.state.rounds.sizes)
            together = await asyncio.gather(*(post(c, b) for b in bodies))
            return alone, list(together), list(app.state.rounds.sizes)[before:]


def test_one_round_is_one_batch_answered_as_alone(settings: Settings) -> None:
    bodies = BODIES + [bad for bad, _, _ in BAD]
    alone, together, sizes = asyncio.run(alone_then_together(create_app(settings), bodies))
    assert sizes == [len(BODIES)]                     # the bad ones never reach a batch
    for body, a, t in zip(BODIES, alone, together, strict=False):
        assert a.status_code == t.status_code == 200, (body, t.text)
        assert t.content == a.content                 # byte for byte
        assert len(t.json()["steered"]) == body["n"]
    for (_, status, names), a, t in zip(BAD, alone[len(BODIES):], together[len(BODIES):],
                                        strict=True):
        assert a.status_code == t.status_code == status
        assert names in t.text


def test_a_failing_batch_is_answered_job_by_job(settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings)
    calls: list[int] = []

    def broken(jobs: list[Any]) -> list[Any]:
        calls.append(len(jobs))
        if len(jobs) > 1:
            raise RuntimeError("a batch gone wrong")
        return real(jobs)

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], list[int]]:
        async with app.router.lifespan_context(app):
            nonlocal real
            real = app.state.engine.recommend_many
            monkeypatch.setattr(app.state.engine, "recommend_many", broken)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://testserver") as c:
                alone = [await post(c, b) for b in BODIES]
                together = await asyncio.gather(*(post(c, b) for b in BODIES))
                return alone, list(together), list(app.state.rounds.sizes)

    real: Any = None
    alone, together, sizes = asyncio.run(run())
    assert len(BODIES) in sizes and len(BODIES) in calls      # the batch was tried...
    for a, t in zip(alone, together, strict=True):            # ...then each job alone
        assert a.status_code == t.status_code == 200
        assert t.content == a.content


def test_a_job_that_fails_alone_fails_only_its_own_request(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch fails, then one job fails alone too: its request gets the guard's 500,
    every other request of the round its own answer."""
    app = create_app(settings)

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with app.router.lifespan_context(app):
            engine = app.state.engine
            many = engine.recommend_many                      # the real one

            def batch(jobs: list[Any]) -> list[Any]:
                raise RuntimeError("a batch gone wrong")

            def one(*job: Any) -> Any:
                if job[0] is engine.user(engine.user_rows[3]):
                    raise RuntimeError("this job alone")
                return many([Job(*job)])[0]

            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://testserver") as c:
                alone = [await post(c, b) for b in BODIES]
                monkeypatch.setattr(engine, "recommend_many", batch)
                monkeypatch.setattr(engine, "recommend", one)
                together = await asyncio.gather(*(post(c, b) for b in BODIES))
                return alone, list(together)

    alone, together = asyncio.run(run())
    for body, a, t in zip(BODIES, alone, together, strict=True):
        if body.get("user") == 3:
            assert t.status_code == 500 and "internal error" in t.text
        else:
            assert t.status_code == 200 and t.content == a.content
