"""The fast lane (app/fastlane.py): the hot endpoint past FastAPI's routing, answered
with the app's own exception handlers; and the API's JSON writer for ranked lists, which
must write the document the dicts would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from app import service
from app.engine import Engine
from app.fastlane import FastLane, Handler, exception_handler
from app.main import create_app
from app.routes import api
from app.schemas import KnobIn, RecommendIn, RecommendOut
from app.settings import Settings
from models.bundle import load_bundle


class Gone(LookupError):
    pass


def lane_app(calls: list[str]) -> FastAPI:
    """A FastAPI app with a routed /slow and a lane for POST /fast."""
    app = FastAPI()

    async def fast(request: Request) -> Response:
        calls.append("lane")
        what = (await request.body()).decode()
        if what == "gone":
            raise Gone("no such thing")
        if what == "teapot":
            raise HTTPException(418, "short and stout")
        if what == "boom":
            raise RuntimeError("no handler for this one")
        return PlainTextResponse(f"fast {what}")

    @app.post("/fast")
    def routed() -> str:
        calls.append("routed")
        return "routed"

    @app.exception_handler(Gone)
    async def gone(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"404: {exc}", status_code=404)

    @app.exception_handler(418)
    async def teapot(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("by status code", status_code=418)

    app.add_middleware(FastLane, routes={("POST", "/fast"): fast})
    return app


def test_the_lane_takes_its_method_and_path_and_nothing_else() -> None:
    calls: list[str] = []
    with TestClient(lane_app(calls), raise_server_exceptions=False) as c:
        assert c.post("/fast", content=b"x").text == "fast x"
        assert calls == ["lane"]
        assert c.get("/fast").status_code == 405          # FastAPI's answer: routed
        assert c.post("/fast/", follow_redirects=False).status_code == 307    # routed
        assert calls == ["lane"]


def test_lane_errors_take_the_apps_handlers() -> None:
    calls: list[str] = []
    with TestClient(lane_app(calls), raise_server_exceptions=False) as c:
        r = c.post("/fast", content=b"gone")
        assert (r.status_code, r.text) == (404, "404: no such thing")
        r = c.post("/fast", content=b"teapot")                 # status code before class
        assert (r.status_code, r.text) == (418, "by status code")
        assert c.post("/fast", content=b"boom").status_code == 500


def test_exception_handler_lookup_follows_the_mro() -> None:
    async def base(request: Request, exc: Exception) -> Response:
        return Response()

    handlers: dict[Any, Handler] = {LookupError: base, Exception: base, 500: base}
    assert exception_handler(handlers, Gone("x")) is base
    assert exception_handler(handlers, KeyError("x")) is base
    # 500 and Exception belong to the outermost error middleware, not to routing's
    assert exception_handler(handlers, ValueError("x")) is None
    assert exception_handler(handlers, HTTPException(500)) is None


def test_a_plain_def_handler_runs_as_starlette_runs_it() -> None:
    calls: list[str] = []
    app = lane_app(calls)

    def sync_gone(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("sync handler", status_code=410)

    app.add_exception_handler(Gone, sync_gone)
    with TestClient(app) as c:
        r = c.post("/fast", content=b"gone")
        assert (r.status_code, r.text) == (410, "sync handler")


def test_the_apps_recommendations_go_through_the_lane(settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """The real app: the lane answers POST /api/v1/recommendations (FastAPI's route for
    it, kept for the docs, is never reached) with the same bytes the route would."""
    reached: list[str] = []
    endpoint = api.recommendations

    async def counted(request: Request) -> Response:
        reached.append("lane")
        return await endpoint(request)

    monkeypatch.setitem(api.FAST_LANE, ("POST", "/api/v1/recommendations"), counted)
    body = {"user": 1, "n": 5, "knobs": [{"neuron": 0, "alpha": 0.3}]}
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/v1/recommendations", json=body)
        assert r.status_code == 200 and reached == ["lane"]
        assert r.headers["x-frame-options"] == "DENY"         # inside the guard
        RecommendOut.model_validate_json(r.content)
        bad = c.post("/api/v1/recommendations", json={**body, "n": 0})
        assert bad.status_code == 422 and reached == ["lane", "lane"]
        assert bad.json()["detail"][0]["loc"] == ["body", "n"]
        assert c.post("/api/v1/recommendations",
                      json={"user": 10**9}).json()["detail"] == "unknown user 1000000000"


@pytest.fixture(scope="module")
def engine(bundle_dir: Path) -> Engine:
    b = load_bundle(bundle_dir)
    return Engine(b, b.elsa.A.device, 1 << 24, 64)


@pytest.mark.parametrize("knobs", [
    [],
    [{"neuron": 0, "alpha": 0.3}],
    [{"neuron": 1, "alpha": 0.6, "direction": "less"}, {"neuron": 2, "alpha": 0.5},
     {"neuron": 3, "alpha": 0.5}],
])
@pytest.mark.parametrize("n", [1, 7, 20, 100])
def test_ranked_json_writes_what_the_dicts_dump(engine: Engine, knobs: list[dict],
                                                n: int) -> None:
    state = engine.user(0)
    applied, shown = service.knobs_from(engine, [KnobIn(**k) for k in knobs])
    ranked = engine.recommend(state, applied, n)
    written = service.ranked_json(engine, ranked, shown)
    assert json.loads(written) == json.loads(service._json(
        service.ranked_items(engine, ranked, shown)))
    assert any(i["why"] for i in json.loads(written)) or not len(ranked.items)
    RecommendOut.model_validate_json(service.recommend(engine, RecommendIn(
        user=int(engine.bundle.interactions.users.ids[0]), n=n,
        knobs=[KnobIn(**k) for k in knobs])))
