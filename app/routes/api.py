"""JSON API v1: user codes, recommendations with knobs, concept, knob, item and user
search. Documented at /docs."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app import service
from app.deps import EngineDep
from app.engine import Engine
from app.rounds import Rounds
from app.schemas import (
    ERRORS,
    CodeOut,
    ConceptOut,
    ItemOut,
    RecommendIn,
    RecommendOut,
    UserOut,
)
from app.security import media_type
from models.neurons import view_dict

M = TypeVar("M", bound=BaseModel)


DOCUMENTED_MODELS: list[type[BaseModel]] = []
"""Request bodies validated by their endpoints (`json_body` records them); `create_app`
adds their schemas to the OpenAPI components."""


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that validates `model` itself."""
    DOCUMENTED_MODELS.append(model)
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


async def json_model(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, parsed and validated in one pass by pydantic's
    JSON parser (FastAPI's body parameter parses, then validates the Python objects: on
    the hot path that cost more than the knob change). As FastAPI's body parameter: a
    missing or non-JSON Content-Type is a 422, a body that is not UTF-8 a 400, one that
    does not fit the model a 422 naming the field."""
    kind = request.headers.get("content-type")
    if kind is None or not _is_json(kind):
        said = "missing" if kind is None else repr(media_type(kind))
        raise RequestValidationError([{
            "type": "model_attributes_type", "loc": ("body",),
            "msg": f"Content-Type {said}: must be application/json", "input": None}])
    try:
        body = await request.body()
    except ClientDisconnect:
        raise HTTPException(400, "the client went away before sending the body") from None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _is_json(content_type: str) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


router = APIRouter(prefix="/api/v1", tags=["api"], responses=ERRORS)


@router.get("/users", response_model=list[UserOut])
def users(engine: EngineDep, q: str = Query("", max_length=20),
          limit: int = Query(50, ge=1, le=500)) -> list[UserOut]:
    """Dataset users whose id starts with `q`, with their history sizes."""
    return service.search_users(engine, q, limit)


@router.get("/users/{user_id}/code", response_model=CodeOut)
def user_code(user_id: int, engine: EngineDep) -> CodeOut:
    """The user's sparse code: active neurons, strongest first, with their labels."""
    return service.user_code(engine, user_id)


async def recommendations(request: Request) -> Response:
    """Top n for a user or a list of liked items, steered by knobs, beside the
    unsteered list; each item says which neurons lift it most."""
    req = await json_model(request, RecommendIn)
    engine: Engine = request.app.state.engine
    if service.is_warm(engine, req):           # well under 1 ms: no thread hop, and
        job, shown = service.job(engine, req)  # batched with this round's others
        rounds: Rounds = request.app.state.rounds
        body = service.answer(engine, await rounds.recommend(job), shown)
    else:
        body = await run_in_threadpool(service.recommend, engine, req)
    # our own plain data, serialised once: FastAPI does not validate it again against
    # response_model (which stays for the docs; the fuzz tests check answers match it)
    return Response(body, media_type="application/json")


router.add_api_route("/recommendations", recommendations, methods=["POST"],
                     response_model=RecommendOut, openapi_extra=json_body(RecommendIn))

FAST_LANE = {("POST", "/api/v1/recommendations"): recommendations}
"""What `app.fastlane.FastLane` takes past FastAPI's routing (the slider's hot path);
the route above documents it and answers the same when reached."""


@router.get("/concepts", response_model=list[ConceptOut])
def concepts(engine: EngineDep, q: str = Query(..., min_length=1, max_length=200),
             limit: int = Query(20, ge=1, le=100)) -> list[ConceptOut]:
    """Concepts whose name starts with (then contains) `q`, and the neurons a concept
    knob moves."""
    return service.search_concepts(engine, q, limit)


@router.get("/knobs/{neuron}")
def knob(neuron: int, engine: EngineDep) -> dict[str, Any]:
    """A neuron: labels, concepts, items it lifts and that activate it, density,
    neighbours."""
    return view_dict(service.describe(engine, neuron))


@router.get("/items", response_model=list[ItemOut])
def items(engine: EngineDep, q: str = Query(..., min_length=1, max_length=200),
          limit: int = Query(20, ge=1, le=100)) -> list[ItemOut]:
    """Items whose title starts with (then contains) `q`, then items by an author whose
    name contains it."""
    return service.search_items(engine, q, limit)


@router.get("/items/{item_id}", response_model=ItemOut)
def item(item_id: int, engine: EngineDep) -> ItemOut:
    return service.item_out(engine, service.item_indices(engine, [item_id])[0])
