"""What one knob is: a neuron's label, its concepts, the items it lifts and the items that
activate it, how many users have it, and its neighbours. `knobs inspect` prints it; the
web app's knob pages show the same."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.bundle import Bundle


@dataclass(frozen=True)
class ItemRef:
    """item: external id; title; score: how strongly (lift: W_dec[n] A^T; activation: the
    item one-hot's code value is not kept, so None); authors: [] where the catalog has
    none (films)."""

    item: int
    title: str
    score: float | None = None
    authors: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class ConceptScore:
    name: str
    kind: str
    score: float


@dataclass(frozen=True)
class Neighbour:
    """neuron; label (None if dead); cosine of the two decoder rows."""

    neuron: int
    label: str | None
    cosine: float


@dataclass(frozen=True)
class NeuronView:
    """Everything shown about one neuron. precision/confidence: of `label` (NaN if dead);
    density: share of the bundle's users whose code has it active."""

    neuron: int
    live: bool
    label: str | None
    kind: str | None
    paper_label: str | None
    precision: float
    confidence: float
    density: float
    concepts: list[ConceptScore]
    lifts: list[ItemRef]
    activated_by: list[ItemRef]
    neighbours: list[Neighbour]


def most_used(bundle: Bundle, n: int) -> list[int]:
    """The n live neurons active for the most users (ties: lower index first)."""
    cmap = bundle.concepts
    density = np.nan_to_num(cmap.density, nan=-1.0)
    order = np.lexsort((np.arange(cmap.h), -density))
    return [int(i) for i in order if cmap.live[i]][:n]


@torch.no_grad()
def describe_neuron(bundle: Bundle, neuron: int, items: int = 10, neighbours: int = 5
                    ) -> NeuronView:
    """The view of one neuron; ValueError naming the range if `neuron` is not one."""
    cmap = bundle.concepts
    if not 0 <= neuron < cmap.h:
        raise ValueError(f"neuron {neuron} does not exist; this bundle has neurons "
                         f"0..{cmap.h - 1}")
    catalog = bundle.catalog
    titles, ids, authors = (catalog[c].tolist() for c in ("title", "item", "authors"))
    w = bundle.sae.W_dec
    lift = (w[neuron] @ bundle.elsa.A.T).cpu()
    top = lift.topk(min(items, len(lift)))
    cos = (w @ w[neuron]).cpu()
    cos[neuron] = -2.0
    near = cos.topk(min(neighbours, len(cos) - 1))
    lab, plab = int(cmap.label[neuron]), int(cmap.paper_label[neuron])
    return NeuronView(
        neuron=neuron, live=bool(cmap.live[neuron]),
        label=cmap.names[lab] if lab >= 0 else None,
        kind=cmap.kinds[lab] if lab >= 0 else None,
        paper_label=cmap.names[plab] if plab >= 0 else None,
        precision=float(cmap.precision[neuron]), confidence=float(cmap.confidence[neuron]),
        density=float(cmap.density[neuron]),
        concepts=[ConceptScore(cmap.names[c], cmap.kinds[c], float(s))
                  for c, s in zip(cmap.top_concepts[neuron], cmap.top_scores[neuron],
                                  strict=True) if c >= 0],
        lifts=[ItemRef(int(ids[i]), titles[i], float(v), list(authors[i]))
               for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)],
        activated_by=[ItemRef(int(ids[i]), titles[i], authors=list(authors[i]))
                      for i in cmap.top_items[neuron][:items] if i >= 0],
        neighbours=[Neighbour(int(j), cmap.label_name(int(j)), float(c))
                    for c, j in zip(near.values.tolist(), near.indices.tolist(),
                                    strict=True)],
    )


def view_dict(v: NeuronView) -> dict[str, Any]:
    """The view as JSON-ready data: unknown numbers (a dead neuron's precision, NaN) are
    None, since JSON has no NaN."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(x) for k, x in value.items()}
        if isinstance(value, list):
            return [clean(x) for x in value]
        return value

    out: dict[str, Any] = clean(dataclasses.asdict(v))
    return out


def format_view(v: NeuronView) -> str:
    """Plain-text rendering for the terminal."""
    if not v.live:
        return f"neuron {v.neuron}: dead (no item activates it), active for " \
               f"{v.density:.1%} of users\n"
    name = f"{v.label} ({v.kind})" if v.label else "no label (its items carry no concept)"
    lines = [f"neuron {v.neuron}: {name}; paper's label: {v.paper_label}",
             f"  precision {v.precision:.2f} (top items carrying the label), confidence "
             f"{v.confidence:.2f}, active for {v.density:.1%} of users",
             "  concepts (tf-idf): " + ", ".join(f"{c.name} [{c.kind}] {c.score:.4f}"
                                                  for c in v.concepts),
             "  lifts most: " + "; ".join(f"{i.title} ({i.score:+.3f})" for i in v.lifts),
             "  activated by: " + "; ".join(i.title for i in v.activated_by),
             "  neighbours: " + ", ".join(f"{n.neuron} {n.label} (cos {n.cosine:.2f})"
                                          for n in v.neighbours)]
    return "\n".join(lines) + "\n"
