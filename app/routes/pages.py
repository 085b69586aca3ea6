"""Server-rendered pages; htmx swaps their fragments. Every page works without JS."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app import service
from app.deps import EngineDep
from app.engine import Engine
from app.htmx import TEMPLATES, render
from app.schemas import MAX_KNOBS, KnobIn, RecommendIn

router = APIRouter(tags=["pages"], include_in_schema=False)
IntList = Annotated[list[int] | None, Query()]
StrList = Annotated[list[str] | None, Query()]

DEFAULT_KNOBS = 8
"""Knobs seeded from the user's own code: their most active neurons."""
HIGH = 0.5
"""Warn when two or more knobs are above this."""


class PageError(ValueError):
    """Bad page input: the message names the field (answered as a 422 page)."""


@dataclass
class KnobRow:
    """One knob row of the steer page: key "n:<neuron>" or "c:<concept>"."""

    key: str
    alpha: float
    direction: str
    label: str
    neuron: int | None
    neurons: list[int]


def _parse_knobs(engine: Engine, kid: list[str], ka: list[str], kd: list[str]
                 ) -> list[KnobRow]:
    if not len(kid) == len(ka) == len(kd):
        raise PageError("knobs: kid, ka and kd must come in threes")
    if len(kid) > MAX_KNOBS:
        raise PageError(f"knobs: at most {MAX_KNOBS}, got {len(kid)}")
    rows = []
    for key, a, d in zip(kid, ka, kd, strict=True):
        try:
            alpha = float(a)
        except ValueError:
            raise PageError(f"ka: {a!r} is not a number") from None
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise PageError(f"ka: alpha must be in [0, 1], got {a}")
        if d not in ("more", "less"):
            raise PageError(f"kd: direction must be 'more' or 'less', got {d!r}")
        kind, _, ref = key.partition(":")
        if kind == "n" and ref.isdigit():
            knob = KnobIn(neuron=int(ref), alpha=alpha, direction=d)  # type: ignore[arg-type]
        elif kind == "c" and ref:
            knob = KnobIn(concept=ref, alpha=alpha, direction=d)  # type: ignore[arg-type]
        else:
            raise PageError(f"kid: {key!r} is not 'n:<neuron>' or 'c:<concept>'")
        _, shown = service.knobs_from(engine, [knob])
        label = (service.knob_title(engine, knob.neuron) if knob.neuron is not None
                 else shown[0].label or ref)
        rows.append(KnobRow(key, alpha, d, label, knob.neuron, shown[0].neurons))
    return rows


def _query(base: dict[str, Any], rows: list[KnobRow]) -> str:
    pairs: list[tuple[str, Any]] = [(k, v) for k, v in base.items() if v is not None]
    for r in rows:
        pairs += [("kid", r.key), ("ka", f"{r.alpha:g}"), ("kd", r.direction)]
    return urlencode(pairs)


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


@router.get("/steer")
def steer(request: Request, engine: EngineDep, user: int | None = None,
          items: IntList = None, kid: StrList = None, ka: StrList = None,
          kd: StrList = None, n: int = Query(20, ge=1, le=100),
          add: str | None = Query(None, max_length=210), remove: str | None = None,
          reset: bool = False) -> Response:
    """The steer page: the user's knobs as sliders, the steered and unsteered top n."""
    items, kid, ka, kd = items or [], kid or [], ka or [], kd or []
    if (user is None) == (not items):
        raise PageError("give a user or at least three liked items")
    if user is None and len(items) < 3:
        raise PageError(f"items: pick at least three liked titles, got {len(items)}")
    state = (engine.user(service.user_index(engine, user)) if user is not None
             else engine.profile(service.item_indices(engine, items)))
    if reset or not (kid or request.query_params.get("seeded")):
        own = sorted(state.scores.active.items(), key=lambda kv: -kv[1])[:DEFAULT_KNOBS]
        kid = [f"n:{nn}" for nn, _ in own]
        ka, kd = ["0"] * len(kid), ["more"] * len(kid)
    rows = _parse_knobs(engine, kid, ka, kd)
    if remove is not None:
        rows = [r for r in rows if r.key != remove]
    if add is not None and add not in {r.key for r in rows}:
        rows += _parse_knobs(engine, [add], ["0.1"], ["more"])
    if len(rows) > MAX_KNOBS:
        raise PageError(f"knobs: at most {MAX_KNOBS}")
    more = sum(r.alpha for r in rows if r.direction == "more")
    scale = 1.0 / more if more > 1.0 else 1.0
    req = RecommendIn(user=user, items=items or None, n=n, knobs=[
        KnobIn(neuron=r.neuron, concept=None if r.neuron is not None else r.key[2:],
               alpha=r.alpha * (scale if r.direction == "more" else 1.0),
               direction=r.direction)  # type: ignore[arg-type]
        for r in rows if r.alpha > 0])
    recs = service.recommend(engine, req)
    for item in recs.steered:          # pages name neurons with both labels
        for w in item.why:
            if w.neuron is not None:
                w.label = service.knob_title(engine, w.neuron)
    base = {"user": user, "n": n, "seeded": 1}
    base_items = [("items", i) for i in items]
    qs = _query(base, rows) + ("&" + urlencode(base_items) if base_items else "")
    history = [service.item_out(engine, int(i)) for i in state.inputs]
    context = {
        "user": user, "items": items, "n": n, "rows": rows, "recs": recs,
        "history": history, "query": qs, "more_total": more, "scaled": scale < 1.0,
        "high": sum(r.alpha > HIGH for r in rows) >= 2,
        "base_query": urlencode([(k, v) for k, v in base.items() if v is not None]
                                + base_items),
    }
    return render(request, "steer.html", "_recs.html", context)


@router.get("/concepts")
def concepts(request: Request, engine: EngineDep, q: str = Query("", max_length=200),
             back: str = Query("", max_length=4000)) -> Response:
    """Typeahead over concept labels for "add a knob"."""
    found = service.search_concepts(engine, q, 15) if q.strip() else []
    return render(request, "concepts.html", "_concepts.html",
                  {"concepts": found, "q": q, "back": back})


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
