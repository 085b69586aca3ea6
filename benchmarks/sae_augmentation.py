"""Measure the SAE training-set augmentation (issue: ~480 training users are far too few
vectors for an SAE). In each of K folds one ELSA is trained; SAE variants that differ only
in their training vectors are trained on it and compared on the same test users.
Writes reports/augmentation.{json,md}.

    .venv/bin/python -m benchmarks.sae_augmentation [--dataset ml-latest-small] [--folds 5]
(about 10 minutes on 2 CPU cores)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from benchmarks.common import (
    elsa_folds,
    fmt_paired,
    fold_benchmark,
    sae_on_fold,
    sae_row,
    write_reports,
)
from models.config import SAEConfig
from models.evaluate import machine_info


def variants(base: SAEConfig) -> dict[str, SAEConfig]:
    plain = dataclasses.replace(base, subsamples_per_user=0, item_onehots=False, mix=0.0,
                                resample=False, init_dec="random")
    subs = dataclasses.replace(plain, subsamples_per_user=base.subsamples_per_user or 32)
    mixed = dataclasses.replace(subs, mix=base.mix or 0.5)
    fresh = dataclasses.replace(mixed, resample=True)
    rows = {
        "users only (paper)": plain,
        "+ sub-sampled histories": subs,
        "+ mixed with other users": mixed,
        "+ fresh each epoch": fresh,
        "+ item one-hots": (onehots := dataclasses.replace(fresh, item_onehots=True)),
        "+ decoder started at items": dataclasses.replace(onehots, init_dec="items"),
    }
    return {f"{name} (shipped default)" if cfg == base else name: cfg
            for name, cfg in rows.items()}


def main() -> None:
    bench = fold_benchmark(__doc__, "augmentation")
    args, device, data, cfg = bench.args, bench.device, bench.data, bench.cfg
    names = list(variants(cfg.sae))
    ndcg: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *names]}
    recall: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *names]}
    stats: dict[str, list[Any]] = {n: [] for n in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    for fold in elsa_folds(data, cfg, args.folds, device):
        f = fold.index
        recall["elsa"].append(fold.recall)
        ndcg["elsa"].append(fold.ndcg)
        for name, sae_cfg in variants(cfg.sae).items():
            run = sae_on_fold(fold, sae_cfg, cfg.seed + f, device)
            seconds[name] += run.seconds
            recall[name].append(run.recall)
            ndcg[name].append(run.ndcg)
            stats[name].append(run.stats)
            logging.info("fold %d %s: nDCG@20 %.4f (ELSA %.4f)", f + 1, name,
                         np.nanmean(run.ndcg), np.nanmean(ndcg["elsa"][-1]))
    rng = np.random.default_rng(0)
    base = np.concatenate(ndcg["elsa"])
    base_r = np.concatenate(recall["elsa"])
    rows: dict[str, Any] = {
        name: {"config": dataclasses.asdict(sae_cfg),
               **sae_row(ndcg[name], recall[name], base, base_r, stats[name], rng),
               "seconds_per_fold": seconds[name] / args.folds}
        for name, sae_cfg in variants(cfg.sae).items()}
    report = {"dataset": args.dataset, "folds": args.folds, "test_users": len(base),
              "elsa": {"ndcg@20": float(np.nanmean(base)),
                       "recall@20": float(np.nanmean(base_r))},
              "variants": rows, "machine": machine_info(device)}
    lines = [f"# SAE augmentation on {args.dataset}", "",
             f"{args.folds}-fold over users ({report['test_users']} test users; ELSA nDCG@20 "
             f"{report['elsa']['ndcg@20']:.4f}). In each fold one ELSA is trained; each row "
             "is an SAE on it that differs only in its training vectors. Dead = active for "
             "no user and no item one-hot. Paired: per-user nDCG@20 difference to ELSA, 95% "
             "bootstrap CI. `make bench` regenerates this.", "",
             "| training vectors | nDCG@20 | kept | paired diff [95% CI] | cosine | L0 | dead "
             "| s/fold |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ndcg@20']:.4f} | {100 * r['ndcg_kept']:.1f}% | "
                     f"{fmt_paired(r['paired_ndcg'])} | {r['cosine']:.3f} | {r['l0']:.1f} | "
                     f"{100 * r['dead_fraction']:.1f}% | {r['seconds_per_fold']:.0f} |")
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
