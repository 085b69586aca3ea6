"""How well steering works: the paper's protocol (method.md §6), K folds over users or one
seeded 80/10/10 user split (`models.evaluate.SplitKind`).

For every test user the target concept is the one that maximises
max(0, #held-out targets carrying it - #inputs carrying it) (ties: a seeded random pick);
users where that is 0 are skipped. The user's code is steered toward the concept's
neurons with the paper's formula (`models.steering.steer_toward`) for each alpha, and the
top 20 (inputs masked) are scored twice: nDCG@20 "personal" against the user's held-out
targets, nDCG@20 "segment" against every item carrying the concept (inputs excluded).

Methods (the neuron set N(c) of a concept, `ConceptMap`):
  unique   "most unique", the top neuron of the concept's row of tfidf(M)
  best1    "best characterizes" top-1, the top of its column of tfidf(M^T)
  best5    "best characterizes" top-5
  liftsN   the concept's top-N neurons by lift (models.concepts, "lifts"), N = 5, 10,
           15, 20; Knobs' concept knobs use N = 10, the best of the four on ml-latest-small
           in two runs (all four stay in the report, so the choice is visible)
  rerank   no SAE steering: the unsteered ELSA+SAE scores, scaled to [0, 1] per user,
           re-ranked as (1 - alpha) score + alpha [item carries the concept] (a baseline)

The concept vocabulary of each fold (or of the one split) never counts the MovieLens tags of
its held-out (validation and test) users.
Each fold also labels an untrained SAE of the same shape and steers with it (a control:
an SAE that learned nothing still gets labels and can still be steered, so the trained
SAE's numbers mean something only where they beat it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from models.concepts import (
    KNOB_NEURONS,
    ConceptMap,
    ConceptVocabulary,
    build_vocabulary,
    elsa_item_rows,
    item_codes,
    map_concepts,
)
from models.config import TrainConfig
from models.data.interactions import HeldOut, Interactions
from models.elsa import ELSA
from models.evaluate import SplitKind, machine_info, protocol_text, user_splits
from models.metrics import mean_se, recall_ndcg_at_k, top_n
from models.sae import SAECode, SparseAutoencoder
from models.steering import steer_toward
from models.train import dense_rows, train_elsa_for, train_sae, untrained_sae

log = logging.getLogger(__name__)

ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
METHODS: dict[str, str] = {
    "unique": "most unique",
    "best1": "best characterizes, top-1",
    "best5": "best characterizes, top-5",
    "lifts5": "top-5 by lift",
    "lifts10": "top-10 by lift",
    "lifts15": "top-15 by lift",
    "lifts20": "top-20 by lift",
    "rerank": "tag re-rank (no SAE steering)",
}
KNOBS_METHOD = f"lifts{KNOB_NEURONS}"
"""The method the app's concept knobs use."""
METHODS[KNOBS_METHOD] = f"Knobs: top-{KNOB_NEURONS} by lift"
SAE_METHODS = ("unique", "best1", "best5", "lifts5", "lifts10", "lifts15", "lifts20")
PERSONAL_FLOOR = 0.9
"""The issue's target: segment nDCG@20 >= 2.5x its alpha-0 value while personal keeps
>= 90% of its alpha-0 value."""
SEGMENT_GOAL = 2.5
K = 20
CONTROL_METHODS = ("best5", KNOBS_METHOD)
"""Methods also run with the untrained SAE."""


def target_concepts(held: HeldOut, carries: sp.csr_matrix, rng: np.random.Generator
                    ) -> np.ndarray:
    """[users]: each user's target concept (§6), -1 where no concept gains. carries:
    [concepts, items] bool."""
    c = carries.T.astype(np.float32).tocsc()
    gain = np.asarray((held.target @ c).todense()) - np.asarray((held.input @ c).todense())
    gain = np.maximum(gain, 0.0)
    out = np.full(gain.shape[0], -1, dtype=np.int64)
    for u in range(gain.shape[0]):
        top = gain[u].max()
        if top > 0:
            out[u] = int(rng.choice(np.flatnonzero(gain[u] == top)))
    return out


def segment_targets(concepts: np.ndarray, carries: sp.csr_matrix, inputs: sp.csr_matrix
                    ) -> sp.csr_matrix:
    """[users, items]: the items carrying each user's concept that are not their inputs."""
    seg = carries[concepts].astype(np.float32).tocsr()
    seg = seg - seg.multiply(inputs > 0)
    seg.eliminate_zeros()
    return seg.tocsr()


def _neuron_sets(cmap: ConceptMap, concepts: np.ndarray, method: str) -> torch.Tensor:
    """[users, n] long, -1 padded: the neurons each user's concept maps to."""
    table, n = {"unique": (cmap.unique, 1), "best1": (cmap.best, 1), "best5": (cmap.best, 5),
                "lifts5": (cmap.lifts, 5), "lifts10": (cmap.lifts, 10),
                "lifts15": (cmap.lifts, 15), "lifts20": (cmap.lifts, 20)}[method]
    return torch.from_numpy(np.ascontiguousarray(table[concepts, :n]))


@torch.no_grad()
def _rank(elsa: ELSA, sae: SparseAutoencoder, x: torch.Tensor, code: SAECode,
          neurons: torch.Tensor, alpha: float) -> np.ndarray:
    """Top K of the users' codes (`code`, encoded once per fold) steered toward `neurons`."""
    z = steer_toward(code.code, neurons.to(x.device), alpha)
    scores = torch.relu(elsa.decode(sae.decode(z, code.mean, code.std)) - x)
    return top_n(scores, K, exclude=x > 0).cpu().numpy()


def _rerank(scaled: torch.Tensor, x: torch.Tensor, concept_items: torch.Tensor,
            alpha: float) -> np.ndarray:
    """The baseline: unsteered scores scaled to [0, 1] per user, mixed with the concept."""
    mixed = (1 - alpha) * scaled + alpha * concept_items
    return top_n(mixed, K, exclude=x > 0).cpu().numpy()


@dataclass
class FoldCurves:
    """Per method and alpha, per-user nDCG@20 arrays (personal, segment) of one fold."""

    users: int = 0
    personal: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    segment: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    untrained_labels: dict[str, Any] = field(default_factory=dict)
    untrained: FoldCurves | None = None
    target_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    test_users: int = 0


def steering_curves(elsa: ELSA, sae: SparseAutoencoder, cmap: ConceptMap,
                    vocab: ConceptVocabulary, held: HeldOut, device: torch.device,
                    rng: np.random.Generator, alphas: tuple[float, ...] = ALPHAS,
                    methods: tuple[str, ...] = tuple(METHODS)) -> FoldCurves:
    """Steer every eligible user of `held` with each method and alpha (module doc)."""
    carries = vocab.carries
    concepts = target_concepts(held, carries, rng)
    keep = np.flatnonzero(concepts >= 0)
    out = FoldCurves(users=len(keep))
    if len(keep) == 0:
        return out
    concepts = concepts[keep]
    inputs = held.input[keep]
    seg = segment_targets(concepts, carries, inputs)
    personal_t = held.target[keep]
    kinds = pd.Series([vocab.kinds[c] for c in concepts]).value_counts()
    out.target_kinds = {str(k): int(v) for k, v in kinds.items()}
    x = dense_rows(inputs, np.arange(len(keep)), device)
    items = torch.from_numpy(carries[concepts].toarray().astype(np.float32)).to(device)
    with torch.no_grad():
        code = sae.encode(elsa.encode(x))                 # once: the refit is the cost
        plain = torch.relu(elsa.decode(sae.decode(code.code, code.mean, code.std)) - x)
        scaled = plain / plain.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    for method in methods:
        out.personal[method], out.segment[method] = {}, {}
        neurons = _neuron_sets(cmap, concepts, method) if method != "rerank" else None
        for a in alphas:
            ranked = (_rerank(scaled, x, items, a) if neurons is None
                      else _rank(elsa, sae, x, code, neurons, a))
            out.personal[method][a] = recall_ndcg_at_k(ranked, personal_t, K)[1]
            out.segment[method][a] = recall_ndcg_at_k(ranked, seg, K)[1]
    return out


def label_concepts(elsa: ELSA, sae: SparseAutoencoder, vocab: ConceptVocabulary,
                   device: torch.device) -> ConceptMap:
    """The §5 map of a trained (or untrained) SAE over the backbone's items."""
    return map_concepts(item_codes(elsa, sae, elsa.n_items, device), vocab,
                        item_rows=elsa_item_rows(elsa, sae))


def run_steering_evaluation(data: Interactions, catalog: pd.DataFrame,
                            tag_events: pd.DataFrame, cfg: TrainConfig, folds: int,
                            device: torch.device, dataset: str, progress: bool = True,
                            alphas: tuple[float, ...] = ALPHAS,
                            hetrec_taggers: Mapping[str, int] | None = None,
                            splits: SplitKind = "folds") -> dict[str, Any]:
    """Train ELSA + SAE on each fold (`splits="folds"`) or on the one 80/10/10 split
    (`"holdout"`, `folds` unused), label it, steer its test users; return the report dict
    behind reports/steering.{json,md}."""
    if alphas[0] != 0.0 or sorted(alphas) != list(alphas):
        raise ValueError(f"alphas must be increasing and start at 0, got {alphas}")
    started = time.perf_counter()
    results: list[FoldCurves] = []
    for f, split in enumerate(user_splits(data, splits, folds, cfg.seed)):
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed + f)
        elsa, _ = train_elsa_for(split.train, split.val, cfg, device, generator, progress)
        sae, _ = train_sae(elsa, split.train, split.val, cfg.sae, device, generator, progress)
        held_out = np.concatenate([split.val.users, split.test.users])
        vocab = build_vocabulary(catalog, tag_events,
                                 exclude_users=data.users.ids[held_out],
                                 hetrec_taggers=hetrec_taggers)
        cmap = label_concepts(elsa, sae, vocab, device)
        untrained = untrained_sae(elsa, split.train, cfg.sae, device,
                                  torch.Generator().manual_seed(cfg.seed + f + 1))
        fold = steering_curves(elsa, sae, cmap, vocab, split.test, device,
                               np.random.default_rng([cfg.seed, f, 6]), alphas)
        fold.labels = cmap.summary()
        ucmap = label_concepts(elsa, untrained, vocab, device)
        fold.untrained_labels = ucmap.summary()
        fold.untrained = steering_curves(elsa, untrained, ucmap, vocab, split.test, device,
                                         np.random.default_rng([cfg.seed, f, 6]), alphas,
                                         CONTROL_METHODS)
        fold.seconds = time.perf_counter() - t0
        fold.test_users = len(split.test.users)
        log.info("fold %d: %d steered users, label coverage %.2f (untrained %.2f), %.0f s",
                 f, fold.users, fold.labels["coverage"], fold.untrained_labels["coverage"],
                 fold.seconds)
        results.append(fold)
    if not any(r.users for r in results):
        raise ValueError("no test user has a target concept (no concept is carried by more "
                         "of a user's held-out items than of their inputs); is there item "
                         "metadata for this dataset?")
    return summarize(results, cfg, splits, dataset, alphas, device,
                     time.perf_counter() - started)


def _mean_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of numeric leaves over folds (nested dicts averaged key by key)."""
    out: dict[str, Any] = {}
    for key, value in dicts[0].items():
        if isinstance(value, dict):
            out[key] = _mean_dicts([d[key] for d in dicts])
        else:
            out[key] = float(np.mean([d[key] for d in dicts]))
    return out


def best_point(curve: list[dict[str, float]]) -> dict[str, float] | None:
    """The alpha > 0 with the largest segment gain among those keeping personal nDCG@20
    >= PERSONAL_FLOOR of alpha 0's; None if none does."""
    base = curve[0]
    ok = [p for p in curve[1:] if p["personal"] >= PERSONAL_FLOOR * base["personal"]]
    if not ok or base["segment"] <= 0:
        return None
    p = max(ok, key=lambda q: q["segment"])
    return {"alpha": p["alpha"], "segment_ratio": p["segment"] / base["segment"],
            "personal_kept": p["personal"] / base["personal"]}


def mean_curves(results: list[FoldCurves], methods: tuple[str, ...],
                alphas: tuple[float, ...]) -> dict[str, list[dict[str, float]]]:
    """Per method, the mean (and SE) over all steered users of each alpha's nDCG@20s."""
    curves: dict[str, list[dict[str, float]]] = {}
    for method in methods:
        curves[method] = []
        for a in alphas:
            pers = np.concatenate([r.personal[method][a] for r in results if r.users])
            seg = np.concatenate([r.segment[method][a] for r in results if r.users])
            (pm, pse), (sm, sse) = mean_se(pers), mean_se(seg)
            curves[method].append({"alpha": a, "personal": pm, "personal_se": pse,
                                   "segment": sm, "segment_se": sse})
    return curves


def summarize(results: list[FoldCurves], cfg: TrainConfig, splits: SplitKind,
              dataset: str, alphas: tuple[float, ...], device: torch.device,
              seconds: float) -> dict[str, Any]:
    """The report dict; protocol["folds"] counts the splits (one for "holdout") and
    protocol["test_users"] their test users (every user for "folds")."""
    curves = mean_curves(results, tuple(METHODS), alphas)
    control = [r.untrained for r in results if r.untrained is not None]
    curves_untrained = mean_curves(control, CONTROL_METHODS, alphas) if control else {}
    best = {m: best_point(curves[m]) for m in METHODS}
    sae_best = [(m, b) for m, b in best.items() if m in SAE_METHODS and b is not None]
    winner = max(sae_best, key=lambda mb: mb[1]["segment_ratio"]) if sae_best else None
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r.target_kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    return {
        "dataset": dataset,
        "protocol": {"split": splits, "folds": len(results), "alphas": list(alphas), "k": K,
                     "steered_users": int(sum(r.users for r in results)),
                     "test_users": int(sum(r.test_users for r in results)),
                     "target_kinds": kinds,
                     "methods": METHODS},
        "curves": curves,
        "best": best,
        "curves_untrained": curves_untrained,
        "best_untrained": {m: best_point(c) for m, c in curves_untrained.items()},
        "target": {"segment_ratio": SEGMENT_GOAL, "personal_kept": PERSONAL_FLOOR,
                   "best_method": winner[0] if winner else None,
                   "met": bool(winner and winner[1]["segment_ratio"] >= SEGMENT_GOAL)},
        "labels": _mean_dicts([r.labels for r in results]),
        "labels_untrained": _mean_dicts([r.untrained_labels for r in results]),
        "config": {"sae": {"h": cfg.sae.h, "k": cfg.sae.k,
                           "refine_steps": cfg.sae.refine_steps,
                           "refine_candidates": cfg.sae.refine_candidates,
                           "refine_solver": cfg.sae.refine_solver},
                   "elsa": {"d": cfg.elsa.d}, "seed": cfg.seed},
        "seconds": seconds,
        "fold_seconds": [r.seconds for r in results],
        "machine": machine_info(device),
    }


def write_markdown(report: dict[str, Any]) -> str:
    p = report["protocol"]
    lines = [f"# Steering on {report['dataset']}", "",
             f"{protocol_text(p)}; {p['steered_users']} test users with a target "
             f"concept (of {p['test_users']}); target kinds {p['target_kinds']}. nDCG@{p['k']} "
             "personal (held-out targets) / segment (all items carrying the concept), mean "
             "over users. Produced by `knobs steer-eval` in "
             f"{report['seconds'] / 60:.1f} min.", "",
             "| method | " + " | ".join(f"alpha {a:g}" for a in p["alphas"]) + " |",
             "|---|" + "---|" * len(p["alphas"])]
    rows = [(name, report["curves"][m]) for m, name in METHODS.items()]
    rows += [(f"{METHODS[m]} (untrained SAE, control)", c)
             for m, c in report.get("curves_untrained", {}).items()]
    for name, curve in rows:
        cells = [f"{q['personal']:.3f} / {q['segment']:.3f}" for q in curve]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Best alpha per method keeping personal >= {PERSONAL_FLOOR:.0%} of alpha 0 "
              f"(target: segment >= {SEGMENT_GOAL}x alpha 0's):", ""]
    points = [(name, report["best"][m]) for m, name in METHODS.items()]
    points += [(f"{METHODS[m]} (untrained SAE, control)", b)
               for m, b in report.get("best_untrained", {}).items()]
    for name, b in points:
        lines.append(f"- {name}: " + ("no alpha keeps personal" if b is None else
                     f"alpha {b['alpha']:g}, segment {b['segment_ratio']:.2f}x, personal "
                     f"{b['personal_kept']:.0%}"))
    t = report["target"]
    lines += ["", f"Target met: **{'yes' if t['met'] else 'no'}** (best SAE method: "
              f"{METHODS.get(t['best_method'] or '', 'none')}).", ""]
    lab, un = report["labels"], report["labels_untrained"]
    over = " (mean over folds)" if p.get("split", "folds") == "folds" else ""
    lines += [f"## Labels{over}", "",
              "| SAE | label | live neurons with precision >= 0.2 | median precision | "
              "distinct labels |", "|---|---|---|---|---|"]
    for sae_name, d in (("trained", lab), ("untrained (control)", un)):
        lines.append(f"| {sae_name} | Knobs (enriched, most precise) | {d['coverage']:.1%} | "
                     f"{d['median_precision']:.2f} | {d['distinct_labels']:.0f} |")
        pp = d["paper"]
        lines.append(f"| {sae_name} | paper (TF-IDF argmax) | {pp['coverage']:.1%} | "
                     f"{pp['median_precision']:.2f} | {pp['distinct_labels']:.0f} |")
    lines += ["", f"Concepts: {lab['concepts']:.0f}; live neurons {lab['live']:.0f} of "
              f"{lab['neurons']:.0f}; relative entropy decrease (mean over concepts) "
              f"{lab['entropy_decrease']:.3f} (untrained {un['entropy_decrease']:.3f}); "
              f"confidence >= 0.2: {lab['confident_share']:.1%}.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Personal vs segment nDCG@20, one curve per method, alphas annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for m, name in METHODS.items():
        pts = report["curves"][m]
        xs = [q["personal"] for q in pts]
        ys = [q["segment"] for q in pts]
        ax.plot(xs, ys, marker="o", label=name, linestyle="--" if m == "rerank" else "-")
        for q in pts:
            ax.annotate(f"{q['alpha']:g}", (q["personal"], q["segment"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    for m, pts in report.get("curves_untrained", {}).items():
        ax.plot([q["personal"] for q in pts], [q["segment"] for q in pts], marker=".",
                linestyle=":", alpha=0.6, label=f"{METHODS[m]}, untrained SAE")
    base = report["curves"]["best1"][0]
    ax.axvline(PERSONAL_FLOOR * base["personal"], color="grey", linewidth=0.8, linestyle=":")
    ax.axhline(SEGMENT_GOAL * base["segment"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("personal nDCG@20 (held-out items)")
    ax.set_ylabel("segment nDCG@20 (items of the concept)")
    ax.set_title(f"Steering toward a concept, {report['dataset']} (alpha at each point)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
