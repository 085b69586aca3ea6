"""Server-rendered pages; htmx swaps their fragments. Every page works without JS."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app import service
from app.db import queries
from app.deps import DbDep, EngineDep
from app.htmx import TEMPLATES, render
from app.security import csrf_token, known_visitor

router = APIRouter(tags=["pages"], include_in_schema=False)
IntList = Annotated[list[int] | None, Query()]

class PageError(ValueError):
    """Bad page input: the message names the field (answered as a 422 page)."""


@router.get("/")
def home(request: Request, engine: EngineDep, q: str = Query("", max_length=20)) -> Response:
    """Pick a dataset user, or start a profile from liked titles."""
    users = service.search_users(engine, q, 50)
    return render(request, "home.html", "_users.html", {"users": users, "q": q})


@router.get("/items")
def items(request: Request, engine: EngineDep, q: str = Query("", max_length=200),
          items: IntList = None) -> Response:
    """Title search; on the home page the titles already liked (`items`) stay listed,
    ticked, above the results, so a new profile survives new searches."""
    liked = [service.item_out(engine, i)
             for i in service.item_indices(engine, list(dict.fromkeys(items or [])))]
    ids = {i.id for i in liked}
    found = [i for i in service.search_items(engine, q, 20) if i.id not in ids] \
        if q.strip() else []
    return render(request, "items.html", "_items.html", {"items": found, "q": q,
                                                          "liked": liked})


@router.get("/items/{item_id}")
def item(request: Request, item_id: int, engine: EngineDep) -> Response:
    index = service.item_indices(engine, [item_id])[0]
    state = engine.profile([index])
    cmap = engine.bundle.concepts
    knobs = [(n, cmap.label_name(n), v) for n, v in
             sorted(state.scores.active.items(), key=lambda kv: -kv[1])]
    return TEMPLATES.TemplateResponse(request, "pages/item.html", {
        "item": service.item_out(engine, index), "knobs": knobs})


@router.get("/concepts")
def concepts(request: Request, engine: EngineDep, db: DbDep,
             q: str = Query("", max_length=200),
             session: str = Query("", max_length=64)) -> Response:
    """Typeahead over concept labels; with `session` (one of yours), each result adds it
    as a knob there."""
    vid = known_visitor(request)
    if session:
        with db.read() as s:
            queries.owned_session(s, session, vid)      # Missing unless it is yours
    found = service.search_concepts(engine, q, 15) if q.strip() else []
    csrf = csrf_token(request.app.state.secret, vid) if vid and session else ""
    return render(request, "concepts.html", "_concepts.html",
                  {"concepts": found, "q": q, "session": session, "csrf": csrf})


@router.get("/knobs/{neuron}")
def knob(request: Request, neuron: int, engine: EngineDep) -> Response:
    view = service.describe(engine, neuron)
    values = engine.activations(neuron)
    return TEMPLATES.TemplateResponse(request, "pages/knob.html", {
        "v": view, "histogram": histogram(values), "users": len(values)})


def histogram(values: np.ndarray, bins: int = 20) -> dict[str, Any]:
    """Bars of the neuron's non-zero activations among the bundle's users (inline SVG)."""
    active = values[values > 0]
    if len(active) == 0:
        return {"bars": [], "max": 0.0, "lo": 0.0, "hi": 0.0, "active": 0}
    counts, edges = np.histogram(active, bins=bins)
    top = max(int(counts.max()), 1)
    return {"bars": [{"x": i, "h": c / top, "count": int(c), "lo": float(edges[i]),
                      "hi": float(edges[i + 1])} for i, c in enumerate(counts)],
            "max": top, "lo": float(edges[0]), "hi": float(edges[-1]), "active": len(active)}
