"""From SAE neurons to named concepts (method.md §5).

1. A concept vocabulary from item metadata (`build_vocabulary`): genres, release decades,
   MovieLens user tags, HetRec tags, directors and countries; for books, authors and the
   content shelves of models.data.shelves; normalised and merged, with counts
   C [concepts, items].
2. S [items, h]: every item's one-hot through the backbone encoder and the SAE encoder
   (`item_codes`).
3. P = C with rows divided by their sums; M = P S [concepts, h].
4. TF-IDF in both directions (`tfidf`, terms are rows): the paper's label of a neuron is
   the argmax of its row of tfidf(M^T); "best characterizes" = the top neurons of a
   concept's column of tfidf(M^T); "most unique" = the top neurons of a concept's row of
   tfidf(M). Dead neurons (no item activates them) are excluded.
5. Quality: relative entropy decrease of every concept's distribution over neurons
   (monosemanticity), label precision (the share of a neuron's 20 top-activating items
   that carry its label) and a chance-corrected confidence.

Knobs' label. The paper's TF-IDF label favours concepts with few items that put much of
their mass on the neuron ("bank robbery", "alan parker"); on ml-latest-small only ~3% of
such labels are carried by a fifth of the neuron's top items (reports/steering.md). The
label a person sees is therefore chosen among the concepts *enriched* among the neuron's
top-activating items (carried by at least twice the share of them as of all items) as the
one carried by the most of them, ties to the higher TF-IDF score; a neuron without an
enriched concept keeps the paper's label. The paper's label is kept beside it
(`ConceptMap.paper_label`) and both are measured.

Knobs' concept -> neuron map ("lifts"). A knob moves a user's code along the decoder rows
of its neurons, so for steering the question is which neurons' item-score rows
R[n] = W_dec[n] A^T (method.md §7) raise the concept's items the most. `lifts` ranks the
live neurons of each concept by the mean, over the concept's items, of R[n] standardised
across items. Steering toward a concept's top-10 "lift" neurons trades personal for segment
accuracy better than the paper's maps (reports/steering.md).

Everything here is numpy / scipy / torch; `ConceptMap` is what a bundle stores.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from models.data.parsing import normalize_name
from models.elsa import ELSA
from models.multvae import MultVAE
from models.sae import SparseAutoencoder
from models.train import embed_rows

KINDS: tuple[str, ...] = ("genre", "decade", "director", "author", "country", "tag")
"""Concept kinds. A name found in several sources is one concept, shown as the kind that
gives it the most items (ties in this order): "sci-fi" is a genre on far more films than
carry the tag, "tom hanks" a tag on more films than he directed. Decades ("1990s") come
from the catalog's years."""

KNOB_NEURONS = 10
"""A concept knob moves the concept's top-10 neurons by lift: of 5, 10, 15 and 20, the one
that traded personal for segment accuracy best on both steering runs (reports/steering.md,
reports/steering-seed1.md). The app caps it for small SAEs (app.service)."""

MIN_LIFT = 2.0
"""Knobs' label must be carried by at least this many times the share of the neuron's top
items as of all items."""

MIN_TAGGERS = 2
"""A name that only tags give is a concept when at least this many people use it."""

TOP_ITEMS = 20
"""Label precision looks at a neuron's 20 top-activating items (issue 3)."""

normalize = normalize_name
"""Lowercase, strip, collapse inner whitespace: ' Sci-Fi ' -> 'sci-fi' (shared with the
data loaders: hetrec.count_taggers counts HetRec users by the same names)."""


def concept_row(names: list[str], name: str) -> int:
    """Row of `name` (normalised) in a sorted list of concept names; KeyError naming it."""
    key = normalize(name)
    row = bisect.bisect_left(names, key)
    if row == len(names) or names[row] != key:
        raise KeyError(f"no concept named {key!r}")
    return row


@dataclass(frozen=True)
class ConceptVocabulary:
    """names: normalised concept names; kinds: one of KINDS per name; counts: C
    [concepts, items] CSR float32, how often each concept was applied to each item
    (a genre, director or country counts 1; a MovieLens tag 1 per application; a HetRec
    tag its weight, how often it was applied to the movie)."""

    names: list[str]
    kinds: list[str]
    counts: sp.csr_matrix

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Row of a concept by (normalised) name; KeyError naming it if absent."""
        return concept_row(self.names, name)

    @property
    def carries(self) -> sp.csr_matrix:
        """[concepts, items] bool: which items carry which concept."""
        return (self.counts > 0).astype(bool).tocsr()


def _catalog_pairs(catalog: pd.DataFrame, column: str) -> Iterable[tuple[int, str, float]]:
    """(item row, text, count) from a list column of the catalog; HetRec tags are
    (text, weight) pairs, the other columns plain strings."""
    if column not in catalog.columns:
        return
    for row, values in enumerate(catalog[column].tolist()):
        if not isinstance(values, list | tuple | np.ndarray):
            continue
        for v in values:
            if isinstance(v, list | tuple) and len(v) == 2:
                yield row, str(v[0]), float(v[1])
            elif v is not None:
                yield row, str(v), 1.0


def build_vocabulary(catalog: pd.DataFrame, tag_events: pd.DataFrame | None = None, *,
                     exclude_users: Sequence[int] | np.ndarray = (), min_items: int = 20,
                     kinds: Sequence[str] = KINDS,
                     hetrec_taggers: Mapping[str, int] | None = None) -> ConceptVocabulary:
    """The concept vocabulary of a catalog (models.data.datasets catalog columns).

    tag_events: MovieLens user tags (columns user, item, tag); when given, they replace the
    catalog's `tags` column so that the tags of `exclude_users` (external user ids: the
    test users of an evaluation) are not counted (method.md §5 counts training users'
    tags only). Names are normalised (`normalize`), equal names of different sources are
    one concept (its kind: see KINDS), and a concept is kept if it is applied to at least
    `min_items` distinct items.

    A name that only ever comes from tags must also show that more than one person uses
    it: two MovieLens users; or a HetRec tag applied to one movie twice (HetRec's weight)
    that, where `hetrec_taggers` is given (Dataset.hetrec_taggers), at least
    MIN_TAGGERS HetRec users applied; or, without `tag_events`, two applications to one
    item in the catalog's `tags`. That drops personal filing tags ("foqam", "tumeys
    dvds") that one user put on hundreds of films: HetRec's weight counts applications,
    not people, so one user's tag can weigh 2. It also drops filing tags that several
    people use now and then, unless a film got one twice. A book's shelf (the catalog's
    `shelves`, weighted by its strength on the book) is shared: models.data.shelves keeps
    only shelves that at least MIN_SHELVERS users put the book on, and it has already
    dropped status, format, ownership, opinion and year shelves.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown concept kind(s) {sorted(unknown)}; choose from {KINDS}")
    if min_items < 1:
        raise ValueError(f"min_items must be >= 1, got {min_items}")
    n_items = len(catalog)
    years = (pd.to_numeric(catalog["year"], errors="coerce").astype("float64").to_numpy()
             if "year" in catalog.columns else np.full(n_items, np.nan))
    decades = ((row, f"{int(y) // 10 * 10}s", 1.0)
               for row, y in enumerate(years.tolist()) if not np.isnan(y))
    sources: list[tuple[str, Iterable[tuple[int, str, float]]]] = [
        ("genre", _catalog_pairs(catalog, "genres")),
        ("decade", decades),
        ("director", _catalog_pairs(catalog, "directors")),
        ("author", _catalog_pairs(catalog, "authors")),
        ("country", _catalog_pairs(catalog, "countries")),
        ("hetrec", _catalog_pairs(catalog, "hetrec_tags")),
        ("shelf", _catalog_pairs(catalog, "shelves")),
    ]
    shared: set[str] = set()          # tag names with evidence of two or more people
    if tag_events is not None:
        events = tag_events
        if len(exclude_users):
            events = events.loc[~events["user"].isin(np.asarray(exclude_users))]
        taggers = events.assign(name=events["tag"].astype(str).map(normalize)).groupby(
            "name")["user"].nunique()
        shared.update(taggers.index[taggers >= MIN_TAGGERS])
        row_of = pd.Series(np.arange(n_items), index=catalog["item"].to_numpy())
        rows = row_of.reindex(events["item"].to_numpy()).to_numpy()
        known = ~np.isnan(rows)
        sources.append(("tag", zip(rows[known].astype(np.int64).tolist(),
                                   events["tag"].astype(str).to_numpy()[known].tolist(),
                                   [1.0] * int(known.sum()), strict=True)))
    else:
        sources.append(("tag", _catalog_pairs(catalog, "tags")))

    cells: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    kind_items: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for source, pairs in sources:
        kind = "tag" if source in ("hetrec", "shelf") else source
        if kind not in kinds:
            continue
        for row, text, count in pairs:
            name = normalize(text)
            if not name or count <= 0:
                continue
            cells[name][row] += count
            kind_items[name][kind].add(row)
            if source == "hetrec":
                if count >= 2 and (hetrec_taggers is None
                                   or hetrec_taggers.get(name, 0) >= MIN_TAGGERS):
                    shared.add(name)
            elif source == "shelf" or (kind == "tag" and tag_events is None
                                       and cells[name][row] >= 2):
                shared.add(name)
    names = sorted(n for n, items in cells.items() if len(items) >= min_items
                   and (name_has_other_kind(kind_items[n]) or n in shared))
    rows_, cols, vals = [], [], []
    for r, name in enumerate(names):
        for item, count in cells[name].items():
            rows_.append(r)
            cols.append(item)
            vals.append(count)
    counts = sp.csr_matrix((np.asarray(vals, dtype=np.float32), (rows_, cols)),
                           shape=(len(names), n_items))
    counts.sort_indices()
    return ConceptVocabulary(names, [_kind(kind_items[n]) for n in names], counts)


def name_has_other_kind(items_by_kind: dict[str, set[int]]) -> bool:
    """Whether a concept comes from anything besides tags (a genre, a director, ...)."""
    return any(k != "tag" for k in items_by_kind)


def _kind(items_by_kind: dict[str, set[int]]) -> str:
    """The kind a merged concept is shown as: the source that gives it the most items,
    ties in KINDS order."""
    return min(items_by_kind, key=lambda k: (-len(items_by_kind[k]), KINDS.index(k)))


@torch.no_grad()
def item_codes(backbone: ELSA | MultVAE, sae: SparseAutoencoder, n_items: int,
               device: torch.device, batch_size: int = 1024) -> sp.csr_matrix:
    """S [items, h] CSR float32: the SAE code of every item's one-hot (§5), the SAE in
    eval mode (as it serves users)."""
    sae.eval()
    onehots = embed_rows(backbone, sp.identity(n_items, dtype=np.float32, format="csr"),
                         device, batch_size)
    parts = [sp.csr_matrix(sae.encode(onehots[s:s + batch_size]).code.cpu().numpy())
             for s in range(0, n_items, batch_size)]
    return sp.vstack(parts).tocsr().astype(np.float32)


def tfidf(x: np.ndarray) -> np.ndarray:
    """TF-IDF of a [terms, documents] matrix (method.md §5): tf = x / column sums;
    idf = ln((N + 1) / (df + 1)) + 1 with N documents and df the documents a term
    occurs in. Empty columns give zero columns."""
    col = x.sum(axis=0, keepdims=True)
    tf = np.divide(x, col, out=np.zeros_like(x), where=col > 0)
    df = (x > 0).sum(axis=1, keepdims=True)
    idf = np.log((x.shape[1] + 1) / (df + 1)) + 1.0
    return (tf * idf).astype(np.float32)


def relative_entropy_decrease(m: np.ndarray) -> np.ndarray:
    """(H - H_x) / H for every row x of a non-negative matrix (§5): H_x the entropy of the
    row as a distribution, H that of the average row distribution. Rows that sum to 0 get
    NaN."""
    sums = m.sum(axis=1, keepdims=True)
    p = np.divide(m, sums, out=np.zeros_like(m, dtype=np.float64), where=sums > 0)
    avg = p[sums[:, 0] > 0].mean(axis=0)

    def entropy(q: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(q > 0, q * np.log(q), 0.0).sum(axis=-1)

    h = float(entropy(avg))
    out = (h - entropy(p)) / h if h > 0 else np.zeros(len(m))
    return np.where(sums[:, 0] > 0, out, np.nan)


@dataclass(frozen=True)
class ConceptMap:
    """The labelled knobs of one bundle (§5), arrays over the SAE's h neurons or the
    vocabulary's concepts.

    names, kinds: the concepts; items_per_concept: [concepts] items carrying each.
    live: [h] bool, neurons that some item activates (the others are dead: no label).
    label: [h] concept row of each live neuron's label (Knobs' rule, module docstring),
      -1 if dead or if none of its items carries a concept (then its precision is 0);
      paper_label: [h] the paper's label, argmax of tfidf(M^T).
    top_concepts, top_scores: [h, 5] the neuron's five best concepts by tfidf(M^T) and
      their scores (-1 / 0 for dead neurons).
    precision, paper_precision: [h] share of the neuron's top-activating items (up to 20,
      among the items that activate it at all) that carry the label; NaN if dead.
    confidence: [h] the label's precision corrected for chance, (precision - base) /
      (1 - base), base the share of all items that carry it, clipped to [0, 1].
    best: [concepts, n_best] "best characterizes" neurons (top of the concept's column of
      tfidf(M^T)), best_scores their scores; unique, unique_scores: "most unique" (top of
      the concept's row of tfidf(M)); lifts, lift_scores: Knobs' map (module doc), the
      live neurons whose item-score rows raise the concept's items most (-1 / 0 when the
      map was built without item rows). -1 pads where fewer live neurons have any weight.
    entropy_decrease: [concepts] relative entropy decrease of each concept's row of M.
    top_items: [h, 20] each neuron's top-activating items, strongest first, -1 pads.
    density: [h] share of users whose code has the neuron active (`code_density`); set
      by whoever knows the users (the bundle: its training data), else NaN.
    """

    names: list[str]
    kinds: list[str]
    items_per_concept: np.ndarray
    live: np.ndarray
    label: np.ndarray
    paper_label: np.ndarray
    top_concepts: np.ndarray
    top_scores: np.ndarray
    precision: np.ndarray
    paper_precision: np.ndarray
    confidence: np.ndarray
    best: np.ndarray
    best_scores: np.ndarray
    unique: np.ndarray
    unique_scores: np.ndarray
    lifts: np.ndarray
    lift_scores: np.ndarray
    entropy_decrease: np.ndarray
    top_items: np.ndarray
    density: np.ndarray

    @property
    def h(self) -> int:
        return len(self.live)

    def concept(self, name: str) -> int:
        """Row of a concept by name (normalised); KeyError naming it if absent."""
        return concept_row(self.names, name)

    def neurons_for(self, concept: int, method: str, n: int = 1) -> np.ndarray:
        """The neuron set N(c) of a concept: method "best" (best characterizes), "unique"
        (most unique) or "lifts" (Knobs), its top n live neurons."""
        table = {"best": self.best, "unique": self.unique, "lifts": self.lifts}.get(method)
        if table is None:
            raise ValueError(f"method must be 'best', 'unique' or 'lifts', got {method!r}")
        row = table[concept, :n]
        return row[row >= 0]

    def label_name(self, neuron: int) -> str | None:
        lab = int(self.label[neuron])
        return self.names[lab] if lab >= 0 else None

    def summary(self) -> dict[str, Any]:
        """Label quality (issue 3), for Knobs' label and the paper's: coverage (share of
        live neurons whose label precision is >= 0.2), median precision, the share with
        confidence >= 0.2, distinct labels; and the mean relative entropy decrease over
        concepts."""
        live = self.live

        def quality(prec: np.ndarray, label: np.ndarray) -> dict[str, float | int]:
            p = prec[live]
            labelled = label[live]
            return {"coverage": float((p >= 0.2).mean()) if len(p) else float("nan"),
                    "median_precision": float(np.median(p)) if len(p) else float("nan"),
                    "distinct_labels": int(len(np.unique(labelled[labelled >= 0])))}

        ent = self.entropy_decrease[~np.isnan(self.entropy_decrease)]
        conf = self.confidence[live]
        return {
            "neurons": int(self.h),
            "live": int(live.sum()),
            "concepts": len(self.names),
            **quality(self.precision, self.label),
            "confident_share": float((conf >= 0.2).mean()) if len(conf) else float("nan"),
            "entropy_decrease": float(ent.mean()) if len(ent) else float("nan"),
            "paper": quality(self.paper_precision, self.paper_label),
        }


def _top_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indices of the n largest positive scores (descending) and the
    scores; -1 / 0 pads."""
    n = min(n, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    vals = np.take_along_axis(scores, idx, axis=1)
    idx = np.where(vals > 0, idx, -1)
    return idx.astype(np.int64), np.where(vals > 0, vals, 0.0).astype(np.float32)


def top_items(codes: sp.csr_matrix, top: int = TOP_ITEMS) -> np.ndarray:
    """[h, top] long: each neuron's top-activating items (largest S[i, n] > 0), strongest
    first, -1 padding where fewer items activate it."""
    by_neuron = codes.T.tocsr()
    out = np.full((by_neuron.shape[0], top), -1, dtype=np.int64)
    for n in range(by_neuron.shape[0]):
        lo, hi = by_neuron.indptr[n], by_neuron.indptr[n + 1]
        chosen = by_neuron.indices[lo:hi][np.argsort(-by_neuron.data[lo:hi],
                                                     kind="stable")[:top]]
        out[n, : len(chosen)] = chosen
    return out


def precision_matrix(tops: np.ndarray, carries: sp.csr_matrix) -> np.ndarray:
    """[h, concepts]: the share of each neuron's top-activating items (`top_items`, -1
    padded) that carry each concept; NaN rows for neurons no item activates."""
    rows, cols = np.nonzero(tops >= 0)
    sel = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, tops[rows, cols])),
                        shape=(tops.shape[0], carries.shape[1]))
    hits = np.asarray((sel @ carries.T.astype(np.float32)).todense(), dtype=np.float64)
    n = (tops >= 0).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / n


ItemRows = Callable[[np.ndarray], np.ndarray]
"""neurons [m] -> their item-score rows [m, items] (R[n] = W_dec[n] A^T for ELSA)."""


def elsa_item_rows(elsa: ELSA, sae: SparseAutoencoder) -> ItemRows:
    """R[n] = W_dec[n] A^T: how much a unit of neuron n raises each item's score (§7)."""

    @torch.no_grad()
    def rows(neurons: np.ndarray) -> np.ndarray:
        idx = torch.from_numpy(neurons).to(sae.W_dec.device)
        return (sae.W_dec[idx] @ elsa.A.T).cpu().numpy()

    return rows


def concept_lifts(item_rows: ItemRows, carries: sp.csr_matrix, live: np.ndarray, n_best: int,
                  chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Knobs' map: for each concept, the live neurons with the largest mean standardised
    item-score row over the concept's items. -> (neurons, scores) [concepts, n_best]."""
    c = carries.astype(np.float64).tocsr()
    sizes = np.maximum(np.asarray(c.sum(axis=1)), 1.0)
    scores = np.full((c.shape[0], len(live)), -np.inf)
    for start in range(0, len(live), chunk):
        idx = np.arange(start, min(start + chunk, len(live)))
        r = item_rows(idx).astype(np.float64)
        z = (r - r.mean(axis=1, keepdims=True)) / np.maximum(r.std(axis=1, keepdims=True),
                                                             1e-12)
        scores[:, idx] = np.asarray(c @ z.T) / sizes
    scores[:, ~live] = -np.inf
    n = min(n_best, len(live))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    vals = np.take_along_axis(scores, order, axis=1)
    ok = np.isfinite(vals)
    return np.where(ok, order, -1).astype(np.int64), np.where(ok, vals, 0.0).astype(np.float32)


def map_concepts(codes: sp.csr_matrix, vocab: ConceptVocabulary, n_best: int = 20,
                 min_lift: float = MIN_LIFT, item_rows: ItemRows | None = None) -> ConceptMap:
    """The §5 mapping and both labels from item codes S [items, h] and a vocabulary;
    with `item_rows` (`elsa_item_rows`) also Knobs' "lifts" map."""
    if codes.shape[0] != vocab.counts.shape[1]:
        raise ValueError(f"item codes have {codes.shape[0]} items, the vocabulary "
                         f"{vocab.counts.shape[1]}")
    if len(vocab) == 0:
        raise ValueError("the concept vocabulary is empty: no metadata concept reaches the "
                         "minimum number of items")
    counts = vocab.counts
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    p = sp.diags(1.0 / np.maximum(row_sums, 1e-12)) @ counts            # P: rows sum to 1
    m = np.asarray((p @ codes).todense(), dtype=np.float64)               # M = P S
    live = np.asarray((codes > 0).sum(axis=0)).ravel() > 0
    m[:, ~live] = 0.0
    by_neuron = tfidf(m.T)               # [h, concepts]: neurons terms, concepts documents
    by_neuron[~live] = 0.0
    by_concept = tfidf(m)                # [concepts, h]: concepts terms, neurons documents
    by_concept[:, ~live] = 0.0

    top_concepts, top_scores = _top_rows(by_neuron, 5)
    paper_label = np.where(live, top_concepts[:, 0], -1)
    carries = vocab.carries
    base = np.asarray(carries.sum(axis=1)).ravel() / counts.shape[1]           # [concepts]
    tops = top_items(codes)
    prec = np.nan_to_num(precision_matrix(tops, carries))                      # [h, concepts]
    # Knobs' label: the most precise enriched concept; TF-IDF breaks ties (module doc)
    tie = by_neuron / max(float(by_neuron.max()), 1e-12) * 1e-6
    enriched = np.where(prec >= min_lift * base, prec + tie, -1.0)
    label = np.where(enriched.max(axis=1) > 0, enriched.argmax(axis=1), paper_label)
    label = np.where(live, label, -1)
    rows = np.arange(len(live))

    def at(labels: np.ndarray) -> np.ndarray:
        # a live neuron none of whose items carries any concept has no label: precision 0
        got = np.where(labels >= 0, prec[rows, np.maximum(labels, 0)], 0.0)
        return np.where(live, got, np.nan)

    precision = at(label)
    lab_base = np.where(label >= 0, base[np.maximum(label, 0)], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(live, np.clip((precision - lab_base) / (1.0 - lab_base), 0, 1),
                              np.nan)
    best, best_scores = _top_rows(np.ascontiguousarray(by_neuron.T), n_best)
    unique, unique_scores = _top_rows(by_concept, n_best)
    if item_rows is not None:
        lifts, lift_scores = concept_lifts(item_rows, carries, live, n_best)
    else:
        lifts = np.full((len(vocab), min(n_best, len(live))), -1, dtype=np.int64)
        lift_scores = np.zeros(lifts.shape, dtype=np.float32)
    return ConceptMap(
        names=list(vocab.names), kinds=list(vocab.kinds),
        items_per_concept=np.asarray(carries.sum(axis=1)).ravel().astype(np.int64),
        live=live, label=label.astype(np.int64), paper_label=paper_label.astype(np.int64),
        top_concepts=top_concepts, top_scores=top_scores, precision=precision,
        paper_precision=at(paper_label), confidence=confidence,
        best=best, best_scores=best_scores, unique=unique, unique_scores=unique_scores,
        lifts=lifts, lift_scores=lift_scores, entropy_decrease=relative_entropy_decrease(m),
        top_items=tops,
        density=np.full(len(live), np.nan),
    )


@torch.no_grad()
def code_density(backbone: ELSA | MultVAE, sae: SparseAutoencoder, matrix: sp.csr_matrix,
                 device: torch.device, batch_size: int = 1024) -> np.ndarray:
    """[h]: the share of the rows of `matrix` (users' histories) whose SAE code has each
    neuron active."""
    sae.eval()
    active = torch.zeros(sae.h, device=device)
    for start in range(0, matrix.shape[0], batch_size):
        u = embed_rows(backbone, matrix[start : start + batch_size], device)
        active += (sae.encode(u).code > 0).sum(dim=0)
    return (active / max(matrix.shape[0], 1)).cpu().numpy().astype(np.float64)
