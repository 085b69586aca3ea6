"""Measure the SAE training-set augmentation (issue: ~480 training users are far too few
vectors for an SAE). One ELSA is trained on a K-fold split; SAE variants that differ only
in their training vectors are trained on it and compared on the same test users.
Writes reports/augmentation.{json,md}.

    .venv/bin/python benchmarks/sae_augmentation.py [--dataset ml-latest-small] [--folds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import SAEConfig, defaults_for
from models.data.datasets import load_dataset
from models.data.interactions import kfold_splits
from models.evaluate import machine_info, sae_stats
from models.metrics import paired_bootstrap
from models.recommender import Recommender
from models.train import evaluate_heldout, resolve_device, train_elsa, train_sae

REPO = Path(__file__).resolve().parents[1]


def variants(base: SAEConfig) -> dict[str, SAEConfig]:
    plain = dataclasses.replace(base, subsamples_per_user=0, item_onehots=False, mix=0.0,
                                resample=False)
    subs = dataclasses.replace(plain, subsamples_per_user=base.subsamples_per_user or 32)
    return {
        "users only (paper)": plain,
        "+ sub-sampled histories": subs,
        "+ mixed with another user": dataclasses.replace(subs, mix=base.mix or 0.5),
        "+ fresh each epoch": dataclasses.replace(subs, mix=base.mix or 0.5, resample=True),
        "+ item one-hots (shipped default)" if base.item_onehots else "+ item one-hots":
            dataclasses.replace(subs, mix=base.mix or 0.5, resample=True, item_onehots=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold", type=int, default=0, help="Which fold's split to use.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "augmentation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, hetrec_metadata=False).interactions
    cfg = defaults_for(data.n_users)
    split = list(kfold_splits(data, args.folds, cfg.seed))[args.fold]
    gen = torch.Generator().manual_seed(cfg.seed)
    elsa, _ = train_elsa(split.train, split.val, cfg.elsa, device, gen, progress=False)
    base_recall, base_ndcg = evaluate_heldout(elsa, split.test, device)
    rows: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for name, sae_cfg in variants(cfg.sae).items():
        started = time.perf_counter()
        sae, hist = train_sae(elsa, split.train, split.val, sae_cfg, device,
                              torch.Generator().manual_seed(cfg.seed), progress=False)
        recall, ndcg = evaluate_heldout(Recommender(elsa, sae), split.test, device)
        stats = sae_stats(elsa, sae, split, device)
        rows[name] = {
            "config": dataclasses.asdict(sae_cfg),
            "ndcg@20": float(np.nanmean(ndcg)), "recall@20": float(np.nanmean(recall)),
            "ndcg_ratio": float(np.nanmean(ndcg) / np.nanmean(base_ndcg)),
            "paired_ndcg": list(paired_bootstrap(ndcg, base_ndcg, rng)),
            "cosine": stats.cosine, "l0": stats.l0, "dead_fraction": stats.dead_fraction,
            "epochs": len(hist), "seconds": time.perf_counter() - started,
        }
        logging.info("%s: %s", name, rows[name])
    report = {"dataset": args.dataset, "fold": args.fold, "folds": args.folds,
              "test_users": len(split.test.users), "elsa": {
                  "ndcg@20": float(np.nanmean(base_ndcg)),
                  "recall@20": float(np.nanmean(base_recall))},
              "variants": rows, "machine": machine_info(device)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# SAE augmentation on {args.dataset}", "",
             f"Fold {args.fold + 1} of {args.folds}: one ELSA (nDCG@20 "
             f"{report['elsa']['ndcg@20']:.4f} on {report['test_users']} test users); each row "
             "is an SAE that differs only in its training vectors. Dead = active for no user "
             "and no item one-hot. Paired: per-user nDCG@20 difference to ELSA, 95% "
             "bootstrap CI.", "",
             "| training vectors | nDCG@20 | kept | paired diff [95% CI] | cosine | L0 | dead |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        d, lo, hi = r["paired_ndcg"]
        lines.append(f"| {name} | {r['ndcg@20']:.4f} | {100 * r['ndcg_ratio']:.1f}% | "
                     f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] | {r['cosine']:.3f} | {r['l0']:.1f} | "
                     f"{100 * r['dead_fraction']:.1f}% |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
