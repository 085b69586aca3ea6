"""The offline comparison of method.md §1: every model on the same test users, K folds over
users for small data or one seeded 80/10/10 user split for large data, means with standard
errors and paired per-user differences with bootstrap CIs. Produces the dict behind
reports/quality.{json,md}."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp
import torch

from models.baselines import Popularity
from models.config import TrainConfig
from models.data.interactions import Interactions, Split, holdout_split, kfold_splits
from models.elsa import ELSA
from models.metrics import mean_se, paired_bootstrap
from models.multvae import MultVAE
from models.recommender import Recommender
from models.sae import SparseAutoencoder
from models.train import (
    embed_rows,
    evaluate_heldout,
    select_ease,
    train_elsa_for,
    train_multvae,
    train_sae,
)

log = logging.getLogger(__name__)

SplitKind = Literal["folds", "holdout"]
"""folds: K folds over users, every user a test user once (Knobs, for small data);
holdout: one seeded 80/10/10 user split, a tenth of the users tested (method.md §1)."""
SPLIT_KINDS: tuple[str, ...] = get_args(SplitKind)

MODEL_NAMES = ("popularity", "ease", "elsa", "elsa+sae", "multvae", "multvae+sae")
PAIRS = (("elsa+sae", "elsa"), ("elsa", "ease"), ("multvae+sae", "multvae"),
         ("elsa", "multvae"))


@dataclass
class SAEStats:
    """cosine: mean cos(u^, u) over test users' embeddings; l0: mean active latents per
    test user; dead_fraction: share of latents active for no user (train, validation or
    test input) and no item one-hot (the definition of the issue's targets)."""

    cosine: float
    l0: float
    dead_fraction: float


@torch.no_grad()
def sae_stats(backbone: ELSA | MultVAE, sae: SparseAutoencoder, split: Split,
              device: torch.device) -> SAEStats:
    test_u = embed_rows(backbone, split.test.input, device)
    out = sae(test_u)
    cosine = torch.nn.functional.cosine_similarity(out.reconstruction, test_u, dim=-1)
    l0 = (out.code > 0).sum(dim=-1).float()
    alive = torch.zeros(sae.h, dtype=torch.bool, device=device)
    eye = sp.identity(split.train.shape[1], dtype=np.float32, format="csr")
    for matrix in (split.train, split.val.input, split.test.input, eye):
        for start in range(0, matrix.shape[0], 1024):
            u = embed_rows(backbone, matrix[start : start + 1024], device)
            alive |= (sae.encode(u).code > 0).any(dim=0)
    return SAEStats(float(cosine.mean()), float(l0.mean()),
                    float(1.0 - alive.float().mean()))


@dataclass
class FoldResult:
    """Per-user metric arrays for each model on one fold's test users."""

    users: np.ndarray
    recall: dict[str, np.ndarray] = field(default_factory=dict)
    ndcg: dict[str, np.ndarray] = field(default_factory=dict)
    sae: dict[str, SAEStats] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    ease_l2: float = float("nan")


def evaluate_fold(split: Split, cfg: TrainConfig, device: torch.device,
                  generator: torch.Generator, progress: bool = True) -> FoldResult:
    res = FoldResult(users=split.test.users)

    def record(name: str, scorer: Any, started: float) -> None:
        rec, nd = evaluate_heldout(scorer, split.test, device)
        res.recall[name], res.ndcg[name] = rec, nd
        res.seconds[name] = time.perf_counter() - started
        log.info("%-12s Recall@20 %.4f  nDCG@20 %.4f  (%.1fs)", name, np.nanmean(rec),
                 np.nanmean(nd), res.seconds[name])

    t = time.perf_counter()
    record("popularity", Popularity(split.train).scores, t)
    t = time.perf_counter()
    ease = select_ease(split.train, split.val, cfg.ease_l2, device)
    record("ease", ease.scores, t)
    res.ease_l2 = ease.l2

    t = time.perf_counter()
    elsa, _ = train_elsa_for(split.train, split.val, cfg, device, generator, progress,
                             ease=ease)             # the teacher is this fit, not a second
    del ease
    record("elsa", elsa, t)
    t = time.perf_counter()
    sae, _ = train_sae(elsa, split.train, split.val, cfg.sae, device, generator, progress)
    record("elsa+sae", Recommender(elsa, sae), t)
    res.sae["elsa+sae"] = sae_stats(elsa, sae, split, device)

    t = time.perf_counter()
    vae, _ = train_multvae(split.train, split.val, cfg.multvae, device, generator, progress)
    record("multvae", Recommender(vae), t)
    t = time.perf_counter()
    # §4: L2 suits MultVAE; its decoder is not linear, so the refit measures the embedding.
    # One SAE: restarts pick the served SAE (ELSA's); this row compares backbones
    vae_sae_cfg = dataclasses.replace(cfg.sae, loss="l2", refine_metric="none", restarts=1)
    vsae, _ = train_sae(vae, split.train, split.val, vae_sae_cfg, device, generator, progress)
    record("multvae+sae", Recommender(vae, vsae), t)
    res.sae["multvae+sae"] = sae_stats(vae, vsae, split, device)
    return res


def user_splits(data: Interactions, splits: SplitKind, folds: int, seed: int
                ) -> Iterator[Split]:
    """The splits of the protocol `splits` (`SplitKind`), seeded by `seed`; `folds` is K
    for "folds" and not used by "holdout"."""
    if splits == "folds":
        return kfold_splits(data, folds, seed)
    if splits == "holdout":
        return iter([holdout_split(data, seed)])
    raise ValueError(f"splits must be one of {', '.join(SPLIT_KINDS)}, got {splits!r}")


def run_evaluation(data: Interactions, cfg: TrainConfig, folds: int, device: torch.device,
                   dataset: str, progress: bool = True, splits: SplitKind = "folds"
                   ) -> dict[str, Any]:
    """Evaluate on K folds over users (`splits="folds"`) or on the test users of one
    80/10/10 split (`"holdout"`, `folds` unused); returns the report dict (see
    `write_markdown`)."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(cfg.seed)
    results: list[FoldResult] = []
    for f, split in enumerate(user_splits(data, splits, folds, cfg.seed)):
        log.info("%s, split %d: %d train, %d validation, %d test users", splits, f + 1,
                 split.train.shape[0], len(split.val.users), len(split.test.users))
        results.append(evaluate_fold(split, cfg, device, generator, progress))
    return summarize(results, data, cfg, splits, dataset, device,
                     time.perf_counter() - started)


def summarize(results: list[FoldResult], data: Interactions, cfg: TrainConfig,
              splits: SplitKind, dataset: str, device: torch.device, seconds: float
              ) -> dict[str, Any]:
    """The report dict; its "*_per_fold" lists have one entry per split (one for
    "holdout"), and protocol["folds"] counts the splits."""
    rng = np.random.default_rng(cfg.seed)
    recall = {m: np.concatenate([r.recall[m] for r in results]) for m in MODEL_NAMES}
    ndcg = {m: np.concatenate([r.ndcg[m] for r in results]) for m in MODEL_NAMES}
    models: dict[str, dict[str, Any]] = {}
    for m in MODEL_NAMES:
        r_mean, r_se = mean_se(recall[m])
        n_mean, n_se = mean_se(ndcg[m])
        models[m] = {"recall@20": r_mean, "recall@20_se": r_se,
                     "ndcg@20": n_mean, "ndcg@20_se": n_se,
                     "train_seconds_per_fold": float(np.mean([r.seconds[m] for r in results])),
                     "recall@20_per_fold": [float(np.nanmean(r.recall[m])) for r in results],
                     "ndcg@20_per_fold": [float(np.nanmean(r.ndcg[m])) for r in results]}
    for m in ("elsa+sae", "multvae+sae"):
        for key in ("cosine", "l0", "dead_fraction"):
            models[m][key] = float(np.mean([getattr(r.sae[m], key) for r in results]))
            models[m][f"{key}_per_fold"] = [getattr(r.sae[m], key) for r in results]
    paired: dict[str, dict[str, list[float]]] = {}
    for a, b in PAIRS:
        paired[f"{a} - {b}"] = {
            "recall@20": list(paired_bootstrap(recall[a], recall[b], rng)),
            "ndcg@20": list(paired_bootstrap(ndcg[a], ndcg[b], rng)),
        }
    return {
        "dataset": dataset,
        "protocol": {"split": splits, "folds": len(results), "users": data.n_users,
                     "items": data.n_items, "positives": data.nnz,
                     "test_users": int(len(ndcg["elsa"])),
                     "seed": cfg.seed, "bootstrap": 10_000, "ci": 0.95},
        "config": cfg.to_dict(),
        "ease_l2_per_fold": [r.ease_l2 for r in results],
        "models": models,
        "paired": paired,
        "ratios": {
            "elsa / ease ndcg@20": models["elsa"]["ndcg@20"] / models["ease"]["ndcg@20"],
            "elsa+sae / elsa ndcg@20": models["elsa+sae"]["ndcg@20"] / models["elsa"]["ndcg@20"],
            "elsa+sae / elsa recall@20": (models["elsa+sae"]["recall@20"]
                                          / models["elsa"]["recall@20"]),
        },
        "machine": machine_info(device),
        "seconds": seconds,
    }


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from `cpuinfo` (Linux), else what `platform` says: reports
    made on machines of different speeds differ by this."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "device": str(device),
                            "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _fmt(v: float, se: float | None = None) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.4f}" + (f" ± {se:.4f}" if se is not None and not math.isnan(se) else "")


def protocol_text(protocol: dict[str, Any]) -> str:
    """How the users were split, in words, from a report's "protocol" (reports written
    before "split" existed were K-fold)."""
    if protocol.get("split", "folds") == "holdout":
        return f"one 80/10/10 user split ({protocol['test_users']} test users)"
    return f"{protocol['folds']}-fold over users"


def write_markdown(report: dict[str, Any]) -> str:
    """A readable rendering of the report dict."""
    p = report["protocol"]
    m = report["models"]
    kfold = p.get("split", "folds") == "folds"
    tested = f": every user is a test user once ({p['test_users']} in all)" if kfold else ""
    lines = [
        f"# Offline quality: {report['dataset']}",
        "",
        f"{p['users']} users x {p['items']} items, {p['positives']} positives (rating >= 4, "
        f"users with >= 5). {protocol_text(p)}{tested}; 20% of each test user's items are "
        f"the targets. Seed {p['seed']}. Means ± standard error over users.",
        "",
        f"| model | Recall@20 | nDCG@20 | train s{'/fold' if kfold else ''} |",
        "|---|---|---|---|",
    ]
    for name in MODEL_NAMES:
        r = m[name]
        lines.append(f"| {name} | {_fmt(r['recall@20'], r['recall@20_se'])} | "
                     f"{_fmt(r['ndcg@20'], r['ndcg@20_se'])} | "
                     f"{r['train_seconds_per_fold']:.1f} |")
    lines += ["", "## SAE", "", "| model | reconstruction cosine | L0 | dead latents |",
              "|---|---|---|---|"]
    for name in ("elsa+sae", "multvae+sae"):
        r = m[name]
        lines.append(f"| {name} | {r['cosine']:.3f} | {r['l0']:.1f} | "
                     f"{100 * r['dead_fraction']:.1f}% |")
    lines += ["", "A latent is dead when it is active for no user (train, validation or "
              "test input) and no item one-hot.", "", "## Paired differences",
              "", "Mean per-user difference, 95% percentile bootstrap CI over users.", "",
              "| pair | Recall@20 | nDCG@20 |", "|---|---|---|"]
    for pair, vals in report["paired"].items():
        cells = [f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]" for v in
                 (vals["recall@20"], vals["ndcg@20"])]
        lines.append(f"| {pair} | {cells[0]} | {cells[1]} |")
    ratios = report["ratios"]
    lines += ["", "## Targets", "",
              f"- ELSA nDCG@20 / EASE: {ratios['elsa / ease ndcg@20']:.3f} (target >= 0.97)",
              f"- ELSA+SAE keeps {100 * ratios['elsa+sae / elsa ndcg@20']:.1f}% of ELSA's "
              f"nDCG@20 and {100 * ratios['elsa+sae / elsa recall@20']:.1f}% of its "
              "Recall@20 (target >= 98.5%)"]
    if kfold:
        lines.append("  - per fold, nDCG@20 / Recall@20: " + ", ".join(
            f"{100 * sn / en:.1f}% / {100 * sr / er:.1f}%" for sn, en, sr, er in zip(
                m["elsa+sae"]["ndcg@20_per_fold"], m["elsa"]["ndcg@20_per_fold"],
                m["elsa+sae"]["recall@20_per_fold"], m["elsa"]["recall@20_per_fold"],
                strict=True)))
    lines += [f"- reconstruction cosine {m['elsa+sae']['cosine']:.3f}, dead latents "
              f"{100 * m['elsa+sae']['dead_fraction']:.1f}% (targets: ml-latest-small "
              ">= 0.85 and <= 10%, goodbooks-10k >= 0.90 and <= 5%)",
              f"- wall time {report['seconds'] / 60:.1f} min on {report['machine']['device']} "
              f"({report['machine']['torch_threads']} threads)", ""]
    return "\n".join(lines)
