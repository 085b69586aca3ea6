"""What the API and the pages share: external ids to model indices and back, knobs from
requests, search. Unknown ids raise NotFound naming them (the routes answer 404)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pydantic_core

from app.engine import Engine, Job, Part, Ranked
from app.schemas import (
    ActiveKnob,
    CodeOut,
    ConceptOut,
    ItemOut,
    KnobIn,
    KnobOut,
    RecommendIn,
    UserOut,
)
from models.concepts import KNOB_NEURONS, normalize
from models.neurons import NeuronView, describe_neuron
from models.steering import Knob

CONCEPT_NEURONS = KNOB_NEURONS
"""A concept knob moves its top neurons by lift (models.concepts.KNOB_NEURONS)..."""
CONCEPT_SHARE = 16
"""...but at most 1/16 of the live neurons, so a small SAE's knob stays specific."""


def concept_knob_size(engine: Engine) -> int:
    live = int(engine.bundle.concepts.live.sum())
    return min(CONCEPT_NEURONS, max(2, live // CONCEPT_SHARE))


class NotFound(LookupError):
    """An id that names nothing in this bundle; the message says which."""


def item_out(engine: Engine, index: int) -> ItemOut:
    return engine.item_views[int(index)]


def user_index(engine: Engine, user_id: int) -> int:
    row = engine.user_rows.get(user_id)
    if row is None:
        raise NotFound(f"unknown user {user_id}")
    return row


def item_indices(engine: Engine, ids: Sequence[int]) -> list[int]:
    rows = [engine.item_rows.get(i) for i in ids]
    unknown = [i for i, r in zip(ids, rows, strict=True) if r is None]
    if unknown:
        raise NotFound(f"unknown item{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(str(i) for i in unknown[:10])}")
    return [int(r) for r in rows if r is not None]


def neuron_label(engine: Engine, neuron: int) -> str | None:
    return engine.bundle.concepts.label_name(neuron)


def knob_title(engine: Engine, neuron: int) -> str:
    """What a page calls a neuron: Knobs' label and, where it differs, the paper's more
    specific TF-IDF label ("action · harrison ford"); "unlabelled neuron #n" if none."""
    cmap = engine.bundle.concepts
    label, paper = cmap.label_name(neuron), None
    if cmap.paper_label[neuron] >= 0:
        paper = cmap.names[int(cmap.paper_label[neuron])]
    if label is None:
        return f"unlabelled neuron #{neuron}"
    return f"{label} · {paper}" if paper and paper != label else label


def check_neuron(engine: Engine, neuron: int) -> None:
    h = engine.bundle.concepts.h
    if not 0 <= neuron < h:
        raise NotFound(f"unknown knob {neuron} (this bundle has neurons 0..{h - 1})")


def describe(engine: Engine, neuron: int) -> NeuronView:
    """What a knob page and /api/v1/knobs/{n} show; NotFound if there is no such neuron."""
    check_neuron(engine, neuron)
    return describe_neuron(engine.bundle, neuron)


def concept_neurons(engine: Engine, name: str) -> tuple[int, list[int]]:
    cmap = engine.bundle.concepts
    try:
        c = cmap.concept(name)
    except KeyError:
        raise NotFound(f"unknown concept {normalize(name)!r}") from None
    neurons = knob_neurons(engine, c)
    if not neurons:
        raise NotFound(f"concept {cmap.names[c]!r} maps to no live neuron")
    return c, neurons


def knob_neurons(engine: Engine, c: int) -> list[int]:
    """The neurons concept c's knob moves: its top lift neurons, else its 5 best
    characterizing ones (a bundle without the lifts map); [] if none is live. Computed
    once per concept (a fresh list each call: callers may keep it)."""
    got: tuple[int, ...] | None = engine.memo.get(("knob", c))
    if got is None:
        cmap = engine.bundle.concepts
        neurons = cmap.neurons_for(c, "lifts", concept_knob_size(engine))
        if len(neurons) == 0:
            neurons = cmap.neurons_for(c, "best", 5)
        got = engine.memo[("knob", c)] = tuple(int(n) for n in neurons)
    return list(got)


def knobs_from(engine: Engine, knobs: Sequence[KnobIn]) -> tuple[list[Knob], list[KnobOut]]:
    out, shown = [], []
    for k in knobs:               # a user moves several knobs: the hot path
        if k.neuron is not None:
            check_neuron(engine, k.neuron)
            neurons, label = [k.neuron], neuron_label(engine, k.neuron)
        else:
            c, neurons = concept_neurons(engine, k.concept or "")
            label = engine.bundle.concepts.names[c]
        strength = k.alpha if k.direction == "more" else -k.alpha
        out.append(Knob(tuple(neurons), strength))
        shown.append(KnobOut(neurons=neurons, strength=strength, label=label))
    return out, shown


def is_warm(engine: Engine, req: RecommendIn) -> bool:
    """Whether the request's user state is cached (unknown ids count as warm: they fail
    fast)."""
    if req.user is not None:
        row = engine.user_rows.get(req.user)
        return row is None or engine.is_warm(user_row=row)
    rows = [engine.item_rows.get(i) for i in req.items or []]
    return None in rows or engine.is_warm(items=[r for r in rows if r is not None])


def job(engine: Engine, req: RecommendIn) -> tuple[Job, list[KnobOut]]:
    """The request as an engine job, and its knobs as the answer shows them; NotFound
    for an unknown user, item, knob or concept (encodes the user if not cached)."""
    if req.user is not None:
        state = engine.user(user_index(engine, req.user))
    else:
        state = engine.profile(item_indices(engine, req.items or []))
    knobs, shown = knobs_from(engine, req.knobs)
    return Job(state, knobs, req.n), shown


def recommend(engine: Engine, req: RecommendIn) -> bytes:
    """RecommendOut as JSON, computed alone (`answer`)."""
    one, shown = job(engine, req)
    return answer(engine, engine.recommend(*one), shown)


def answer(engine: Engine, ranked: Ranked, shown: Sequence[KnobOut]) -> bytes:
    """RecommendOut as JSON (the hot path: no per-item models or dicts; both lists
    written from each item's ItemOut JSON, built once at start-up)."""
    heads = engine.item_json
    unsteered = f"[{','.join([f'{heads[i]}}}' for i in ranked.unsteered.tolist()])}]"
    return b"".join((b'{"steered":', ranked_json(engine, ranked, shown),
                     b',"unsteered":', unsteered.encode(),
                     b',"knobs":', _json([k.model_dump() for k in shown]), b"}"))


def _json(data: Any) -> bytes:
    return pydantic_core.to_json(data, inf_nan_mode="null")


def _part_dict(engine: Engine, part: Part, knobs: Sequence[KnobOut]) -> dict[str, Any]:
    """A part of the steered scores as a Why dict without its contribution."""
    if part.kind == "knob":
        return {"neuron": None, "knob": part.ref, "label": knobs[part.ref].label}
    return {"neuron": part.ref, "knob": None,
            "label": engine.bundle.concepts.label_name(part.ref)}


def _why_parts(engine: Engine, ranked: Ranked, knobs: Sequence[KnobOut]
               ) -> dict[int, dict[str, Any]]:
    """The parts of the steered scores that some item names, once each, as Why dicts
    without their contribution."""
    why = ranked.why
    return {j: _part_dict(engine, why.parts[j], knobs)
            for j in np.unique(why.order[why.values > 0]).tolist()}


def _head(part: dict[str, Any]) -> str:
    """A Why dict's JSON up to its contribution: '{"neuron":..,"knob":..,"label":..,
    "contribution":'."""
    return _json(part).decode()[:-1] + ',"contribution":'


def warm_up(engine: Engine) -> None:
    """What the API's first request would build: each neuron's Why JSON."""
    _neuron_heads(engine)


def _neuron_heads(engine: Engine) -> list[str]:
    """Per neuron, `_head` of the Why naming it (built once per engine: labels do not
    change)."""
    heads: list[str] | None = engine.memo.get("why_heads")
    if heads is None:
        heads = engine.memo["why_heads"] = [
            _head(_part_dict(engine, Part("neuron", n), ())) for n in range(engine.sae.h)]
    return heads


def ranked_json(engine: Engine, ranked: Ranked, knobs: Sequence[KnobOut]) -> bytes:
    """`ranked_items` as JSON, written from each item's ItemOut JSON and each neuron's Why
    JSON (both built once), the numbers written in one `_json` call: the same document at
    a fraction of the cost of building and dumping the dicts (the API's hot path)."""
    n = len(ranked.items)
    if not n:
        return b"[]"
    items, why = engine.item_json, ranked.why
    named = why.values > 0                        # [n, <=3]: the parts each item names
    numbers = _json([*ranked.scores.tolist(), *why.values[named].tolist()]
                    ).decode()[1:-1].split(",")
    neuron_heads = _neuron_heads(engine)
    order = why.order[named].tolist()
    heads = {j: neuron_heads[p.ref] if (p := why.parts[j]).kind == "neuron"
             else _head(_part_dict(engine, p, knobs)) for j in set(order)}   # named ones
    reasons = [f"{heads[j]}{v}}}" for j, v in zip(order, numbers[n:], strict=True)]
    ends = np.cumsum(named.sum(axis=1)).tolist()
    out = [f'{items[i]},"score":{numbers[r]},"rank":{r},"rank_before":'
           f'{"null" if before < 0 else before},"why":[{",".join(reasons[a:b])}]}}'
           for r, (i, before, a, b) in enumerate(zip(
               ranked.items.tolist(), ranked.rank_before.tolist(), [0, *ends][:-1], ends,
               strict=True))]
    return f"[{','.join(out)}]".encode()


def ranked_items(engine: Engine, ranked: Ranked, knobs: Sequence[KnobOut]
                 ) -> list[dict[str, Any]]:
    """RankedItem as dicts (templates read them as i.title; `ranked_json` writes the
    same as JSON)."""
    why = ranked.why
    parts = _why_parts(engine, ranked, knobs)
    return [{**engine.item_dicts[i], "score": score, "rank": r,
             "rank_before": None if before < 0 else before,
             "why": [{**parts[j], "contribution": v} for j, v in zip(js, vs, strict=True)
                     if v > 0]}
            for r, (i, score, before, js, vs) in enumerate(zip(
                ranked.items.tolist(), ranked.scores.tolist(), ranked.rank_before.tolist(),
                why.order.tolist(), why.values.tolist(), strict=True))]


def user_code(engine: Engine, user_id: int) -> CodeOut:
    index = user_index(engine, user_id)
    state = engine.user(index)
    cmap = engine.bundle.concepts
    knobs = [ActiveKnob(neuron=n, value=v, label=cmap.label_name(n),
                        kind=cmap.kinds[cmap.label[n]] if cmap.label[n] >= 0 else None,
                        confidence=None if np.isnan(cmap.confidence[n])
                        else float(cmap.confidence[n]))
             for n, v in sorted(state.scores.active.items(), key=lambda kv: -kv[1])]
    return CodeOut(user=user_id, history=len(state.inputs), mass=state.scores.mass,
                   knobs=knobs)


def search_users(engine: Engine, query: str, limit: int) -> list[UserOut]:
    inter = engine.bundle.interactions
    sizes = np.diff(inter.matrix.indptr)
    ids = inter.users.ids
    q = query.strip()
    picked = [r for r in range(len(ids)) if str(ids[r]).startswith(q)] if q else \
        list(range(len(ids)))
    return [UserOut(id=int(ids[r]), history=int(sizes[r])) for r in picked[:limit]]


def search_items(engine: Engine, query: str, limit: int) -> list[ItemOut]:
    """Items whose title starts with `query`, then whose title contains it, then one of
    whose authors' names contains it ("rowling"); case-insensitive."""
    q = query.strip().lower()
    if not q:
        return []
    titles, authors = _search_text(engine)
    starts = np.flatnonzero(titles.str.startswith(q).to_numpy())
    contains = np.flatnonzero(titles.str.contains(q, regex=False).to_numpy())
    by = np.flatnonzero(authors.str.contains(q, regex=False).to_numpy())
    order = list(dict.fromkeys([*starts.tolist(), *contains.tolist(), *by.tolist()]))
    return [item_out(engine, i) for i in order[:limit]]


def _search_text(engine: Engine) -> tuple[pd.Series, pd.Series]:
    """Per item, its title and its authors' names (one a line) in lower case (built
    once per engine)."""
    got: tuple[pd.Series, pd.Series] | None = engine.memo.get("item_search")
    if got is None:
        catalog = engine.bundle.catalog
        got = engine.memo["item_search"] = (
            catalog["title"].str.lower().reset_index(drop=True),
            pd.Series(["\n".join(a).lower() for a in catalog["authors"]], dtype=object))
    return got


def search_concepts(engine: Engine, query: str, limit: int) -> list[ConceptOut]:
    cmap = engine.bundle.concepts
    q = normalize(query)
    names = cmap.names
    hits = [c for c in range(len(names)) if names[c].startswith(q)] + \
        [c for c in range(len(names)) if q in names[c] and not names[c].startswith(q)]
    hits.sort(key=lambda c: (not names[c].startswith(q), -int(cmap.items_per_concept[c])))
    out = []
    for c in hits[:limit]:
        out.append(ConceptOut(name=names[c], kind=cmap.kinds[c],
                              items=int(cmap.items_per_concept[c]),
                              neurons=knob_neurons(engine, c)))
    return out
