"""SAE shape against the three things it trades: what ranking loses through it (issue 2),
how well its neurons can be labelled, and how well concept knobs steer (issue 3).

In each of K folds one ELSA is trained (taught by EASE, the shipped defaults); SAE variants
that differ in width h and active latents k (the refit's candidates stay 2k) are trained
on it with the same seed and compared on the same test users: nDCG@20 and Recall@20 kept
(paired per-user difference to ELSA), reconstruction cosine, dead latents, label coverage
and median precision (models.concepts), and Knobs' concept knobs (the top KNOB_NEURONS by
lift) on the steering protocol (models.steer_eval: best segment gain keeping >= 90% personal).
Writes reports/sae_variants.{json,md}.

    .venv/bin/python -m benchmarks.sae_variants [--dataset ml-latest-small] [--folds 5]
      [--variants k48,h2048] [--ranking-only] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, elsa_folds, fmt_paired, sae_on_fold, sae_row, write_reports
from models.concepts import KNOB_NEURONS, build_vocabulary
from models.config import SAEConfig, defaults_for
from models.data.datasets import load_dataset
from models.evaluate import machine_info
from models.steer_eval import (
    ALPHAS,
    KNOBS_METHOD,
    best_point,
    label_concepts,
    mean_curves,
    steering_curves,
)
from models.train import resolve_device

SHAPES: dict[str, dict[str, Any]] = {
    "k32": {"k": 32},
    "k48": {"k": 48},
    "k64": {"k": 64},
    "h2048": {"h": 2048},
    "h2048-k48": {"h": 2048, "k": 48},
    "h8192": {"h": 8192},
    "random": {"init_dec": "random"},
    "init-items": {"init_dec": "items"},
    "init-vectors": {"init_dec": "vectors"},
    "one-random": {"restarts": 1, "init_dec": "random"},
    "one-init-items": {"restarts": 1, "init_dec": "items"},
    "one-init-vectors": {"restarts": 1, "init_dec": "vectors"},
}
"""Changes to the shipped defaults' SAE (the rest of its config stays). "random" is the
decoder's start shipped until session 15; "one-*" train one SAE instead of the better of
two (README "Choices for small data")."""
STEER = (KNOBS_METHOD,)


def variant(base: SAEConfig, name: str) -> SAEConfig:
    shape = SHAPES[name]
    k = shape.get("k", base.k)
    return dataclasses.replace(base, **shape,
                               refine_candidates=2 * k if base.refine_candidates else 0)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", default="k32,k48,h2048-k48")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ranking-only", action="store_true",
                        help="skip labels and steering (the ranking columns only)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "sae_variants")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = args.variants.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(SHAPES)}")
    device = resolve_device(args.device)
    ds = load_dataset(args.dataset)
    data = ds.interactions
    cfg = defaults_for(data.n_users, args.seed)
    ndcg: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *names]}
    recall: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *names]}
    stats: dict[str, list[Any]] = {n: [] for n in names}
    labels: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    steer: dict[str, list[Any]] = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    started = time.perf_counter()
    for fold in elsa_folds(data, cfg, args.folds, device):
        f, split, elsa = fold.index, fold.split, fold.elsa
        recall["elsa"].append(fold.recall)
        ndcg["elsa"].append(fold.ndcg)
        if not args.ranking_only:          # labels and steering read the fold's metadata
            held_out = np.concatenate([split.val.users, split.test.users])
            vocab = build_vocabulary(ds.catalog, ds.tag_events,
                                     exclude_users=data.users.ids[held_out],
                                     hetrec_taggers=ds.hetrec_taggers)
        for name in names:
            run = sae_on_fold(fold, variant(cfg.sae, name), cfg.seed + f, device)
            sae, n = run.sae, run.ndcg
            seconds[name] += run.seconds
            recall[name].append(run.recall)
            ndcg[name].append(run.ndcg)
            stats[name].append(run.stats)
            if not args.ranking_only:
                cmap = label_concepts(elsa, sae, vocab, device)
                labels[name].append(cmap.summary())
                steer[name].append(steering_curves(
                    elsa, sae, cmap, vocab, split.test, device,
                    np.random.default_rng([cfg.seed, f, 6]), methods=STEER))
            logging.info("fold %d %s: nDCG@20 %.4f (ELSA %.4f)", f + 1, name,
                         np.nanmean(n), np.nanmean(ndcg["elsa"][-1]))
    rng = np.random.default_rng(0)
    base_n, base_r = np.concatenate(ndcg["elsa"]), np.concatenate(recall["elsa"])
    rows: dict[str, Any] = {}
    for name in names:
        curve = (mean_curves(steer[name], STEER, ALPHAS) if steer[name]
                 else {m: [] for m in STEER})
        rows[name] = {
            "config": dataclasses.asdict(variant(cfg.sae, name)),
            **sae_row(ndcg[name], recall[name], base_n, base_r, stats[name], rng),
            "label_coverage": _mean([x["coverage"] for x in labels[name]]),
            "label_median_precision": _mean([x["median_precision"] for x in labels[name]]),
            f"steering_{KNOBS_METHOD}": (best_point(curve[KNOBS_METHOD])
                                         if curve[KNOBS_METHOD] else None),
            f"curve_{KNOBS_METHOD}": curve[KNOBS_METHOD],
            "seconds_per_fold": seconds[name] / args.folds,
        }
    report = {"dataset": args.dataset, "folds": args.folds, "seed": args.seed,
              "variants_asked": args.variants, "ranking_only": args.ranking_only,
              "device": device.type, "test_users": len(base_n),
              "elsa": {"ndcg@20": float(np.nanmean(base_n)),
                       "recall@20": float(np.nanmean(base_r))},
              "shipped": dataclasses.asdict(cfg.sae),
              "variants": rows, "seconds": time.perf_counter() - started,
              "machine": machine_info(device)}
    write_reports(args.out, report, markdown(report))


def markdown(report: dict[str, Any]) -> list[str]:
    """The report as markdown lines."""
    lines = [f"# SAE shape on {report['dataset']}", "",
             f"{report['folds']}-fold over users, seed {report['seed']} "
             f"({report['test_users']} test users; ELSA nDCG@20 "
             f"{report['elsa']['ndcg@20']:.4f}), on {report['device']}. One ELSA per fold; "
             "each row an SAE on it (same seed) that differs in h and k (refit candidates "
             "2k). Kept: ELSA+SAE / ELSA. Labels: coverage = share of live neurons whose "
             "label precision is >= 0.2. Steering: concept knobs "
             f"(top-{KNOB_NEURONS} by lift), best "
             "segment gain keeping >= 90% personal nDCG@20. s/fold: SAE training.", "",
             "| SAE | h | k | nDCG kept | Recall kept | paired nDCG diff [95% CI] | cosine "
             "| dead | label coverage | median precision | steering (alpha) | s/fold |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        b = r[f"steering_{KNOBS_METHOD}"]
        shipped = " (shipped)" if r["config"] == report["shipped"] else ""
        st = (f"{b['segment_ratio']:.2f}x @ {100 * b['personal_kept']:.0f}% ({b['alpha']})"
              if b else "-")
        cov, med = r["label_coverage"], r["label_median_precision"]
        lines.append(f"| {name}{shipped} | {r['config']['h']} | {r['config']['k']} | "
                     f"{100 * r['ndcg_kept']:.1f}% | {100 * r['recall_kept']:.1f}% | "
                     f"{fmt_paired(r['paired_ndcg'])} | {r['cosine']:.3f} | "
                     f"{100 * r['dead_fraction']:.1f}% | "
                     f"{'-' if np.isnan(cov) else f'{100 * cov:.1f}%'} | "
                     f"{'-' if np.isnan(med) else f'{med:.2f}'} | {st} | "
                     f"{r['seconds_per_fold']:.0f} |")
    lines += ["", f"`python -m benchmarks.sae_variants --folds {report['folds']} --seed "
              f"{report['seed']} --variants {report['variants_asked']}"
              f"{' --ranking-only' if report['ranking_only'] else ''}`"]
    return lines


if __name__ == "__main__":
    main()
