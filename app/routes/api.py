"""JSON API v1: user codes, recommendations with knobs, concept, knob, item and user
search. Documented at /docs."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app import service
from app.deps import EngineDep
from app.schemas import (
    ERRORS,
    CodeOut,
    ConceptOut,
    ItemOut,
    RecommendIn,
    RecommendOut,
    UserOut,
)
from models.neurons import view_dict

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


@router.post("/recommendations", response_model=RecommendOut)
async def recommendations(req: RecommendIn, engine: EngineDep) -> Response:
    """Top n for a user or a list of liked items, steered by knobs, beside the
    unsteered list; each item says which neurons lift it most."""
    if service.is_warm(engine, req):           # well under 1 ms: no thread hop
        out = service.recommend(engine, req)
    else:
        out = await run_in_threadpool(service.recommend, engine, req)
    # our own plain data, serialised once: FastAPI does not validate it again against
    # response_model (which stays for the docs; the fuzz tests check answers match it)
    return Response(pydantic_core.to_json(out, inf_nan_mode="null"), media_type="application/json")


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
    """Items whose title starts with (then contains) `q`."""
    return service.search_items(engine, q, limit)


@router.get("/items/{item_id}", response_model=ItemOut)
def item(item_id: int, engine: EngineDep) -> ItemOut:
    return service.item_out(engine, service.item_indices(engine, [item_id])[0])
