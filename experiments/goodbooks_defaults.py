"""Which training defaults suit goodbooks-10k (28,971 users, 9,999 books): ELSA against
EASE, then SAE shapes and the augmentation on the chosen ELSA, all on one seeded 80/10/10
user split (method.md §1). Decided: models.config.defaults_for's middle tier.

    .venv/bin/python -m experiments.goodbooks_defaults elsa --variants paper,teacher-d1024
    .venv/bin/python -m experiments.goodbooks_defaults sae --elsa teacher-d1024 \
        --variants k32-h4096,k32-h4096-onehots

Each run adds its rows to reports/goodbooks-10k/defaults.json (a row per variant, the
last run of a name wins) and rewrites defaults.md from it. ELSA rows: test nDCG@20 and
Recall@20 against EASE's (the best of TrainConfig.ease_l2 on the validation users),
epochs and seconds. SAE rows: the nested model's nDCG@20 and Recall@20 as a share of its
ELSA's with the paired per-user difference and its bootstrap CI, reconstruction cosine,
dead latents (active for no user and no item one-hot), seconds, and peak memory of the
process so far. ELSAs are kept under --cache so SAE runs reuse them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.config import ELSAConfig, SAEConfig
from models.data.datasets import load_dataset
from models.data.interactions import holdout_split
from models.elsa import ELSA
from models.evaluate import machine_info, sae_stats
from models.metrics import mean_se, paired_bootstrap
from models.recommender import Recommender
from models.train import evaluate_heldout, select_ease, train_elsa, train_sae

log = logging.getLogger("experiments.goodbooks_defaults")
DATASET = "goodbooks-10k"
OUT = Path("reports/goodbooks-10k/defaults")

ELSAS: dict[str, ELSAConfig] = {
    "paper": ELSAConfig(),
    "lr1e-3-b256": ELSAConfig(lr=1e-3, batch_size=256, max_epochs=20, patience=4),
    "d512-lr1e-3-b256": ELSAConfig(d=512, lr=1e-3, batch_size=256, max_epochs=20,
                                   patience=4),
    "teacher-d512": ELSAConfig(d=512, lr=1e-3, batch_size=256, max_epochs=20, patience=4,
                               teacher="ease"),
    "teacher-d1024": ELSAConfig(d=1024, lr=1e-3, batch_size=256, max_epochs=20, patience=4,
                                teacher="ease"),
    "teacher-d1024-lr3e-4": ELSAConfig(d=1024, lr=3e-4, batch_size=256, max_epochs=20,
                                       patience=3, teacher="ease"),
    "teacher-d2048": ELSAConfig(d=2048, lr=1e-3, batch_size=256, max_epochs=20, patience=3,
                                teacher="ease"),
    "d1024-lr1e-3-b256": ELSAConfig(d=1024, lr=1e-3, batch_size=256, max_epochs=20,
                                    patience=3),
    "d2048-lr1e-3-b256": ELSAConfig(d=2048, lr=1e-3, batch_size=256, max_epochs=20,
                                    patience=3),
}
"""ELSA settings tried; the paper's are d = 1024, lr 3e-4, batch 1024, 25 epochs."""

_REFIT = {"refine_steps": 50, "refine_candidates": 64, "refine_metric": "top-items"}
SAES: dict[str, SAEConfig] = {
    "paper": SAEConfig(),
    "k32-h8192": SAEConfig(k=32),
    "k32-h4096": SAEConfig(h=4096, k=32),
    "k32-h4096-lr1e-3": SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=20,
                                  patience=4, min_delta=1e-3),
    "k32-h4096-onehots": SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=20,
                                   patience=4, min_delta=1e-3, item_onehots=True,
                                   init_b_dec=True, init_dec="items"),
    "k32-h4096-onehots-refit": SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256,
                                         max_epochs=20, patience=4, min_delta=1e-3,
                                         item_onehots=True, init_b_dec=True,
                                         init_dec="items", **_REFIT),  # type: ignore[arg-type]
    "k32-h4096-refit": SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=20,
                                 patience=4, min_delta=1e-3, init_b_dec=True,
                                 init_dec="vectors", **_REFIT),  # type: ignore[arg-type]
    "k32-h4096-augmented": SAEConfig(h=4096, k=32, lr=1e-3, batch_size=256, max_epochs=20,
                                     patience=4, min_delta=1e-3, subsamples_per_user=4,
                                     mix=0.5, resample=True, item_onehots=True,
                                     init_b_dec=True, init_dec="items", **_REFIT),  # type: ignore[arg-type]
    "k32-h8192-onehots-refit": SAEConfig(h=8192, k=32, lr=1e-3, batch_size=256,
                                         max_epochs=20, patience=4, min_delta=1e-3,
                                         item_onehots=True, init_b_dec=True,
                                         init_dec="items", **_REFIT),  # type: ignore[arg-type]
}
"""SAE settings tried; "augmented" adds 4 sub-samples of each training history a epoch
(half of them mixed with another user's), the small-data default adds 32."""


def peak_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_report() -> dict[str, Any]:
    path = OUT.with_suffix(".json")
    if path.exists():
        report: dict[str, Any] = json.loads(path.read_text())
        return report
    return {"dataset": DATASET, "elsa": {}, "sae": {}}


def record(section: str, key: str, row: dict[str, Any], run: dict[str, Any]) -> None:
    """Add one row to the report on disk (reread first: runs of the two stages may go on
    side by side) with this run's split and machine, and rewrite both files."""
    report = load_report()
    report.update(run)
    report[section][key] = row
    write(report)


def write(report: dict[str, Any]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    OUT.with_suffix(".md").write_text("\n".join(markdown(report)) + "\n")


def markdown(r: dict[str, Any]) -> list[str]:
    lines = ["# goodbooks-10k: training defaults", "",
             "`python -m experiments.goodbooks_defaults` on one seeded 80/10/10 user split "
             f"({r.get('split', {}).get('test', '?')} test users); machine: "
             f"{r.get('machine', {}).get('cpu', '?')}.", ""]
    if "notes" in r:
        lines += [r["notes"], ""]
    if "ease" in r:
        e = r["ease"]
        lines += [f"EASE (l2 {e['l2']:g}, chosen on validation): nDCG@20 {e['ndcg']:.4f}, "
                  f"Recall@20 {e['recall']:.4f} ({e['seconds']:.0f} s).", ""]
    lines += ["## ELSA", "", "| variant | d | nDCG@20 | x EASE | Recall@20 | epochs | s |",
              "|---|---|---|---|---|---|---|"]
    for name, row in r["elsa"].items():
        lines.append(f"| {name} | {row['d']} | {row['ndcg']:.4f} | {row['vs_ease']:.3f} | "
                     f"{row['recall']:.4f} | {row['epochs']} | {row['seconds']:.0f} |")
    lines += ["", "## SAE (nested in the named ELSA)", "",
              "| ELSA | variant | h | k | nDCG kept | paired diff [95% CI] | Recall kept | "
              "cosine | dead | epochs | s | peak MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in r["sae"].items():
        elsa, name = key.split("/", 1)
        d, lo, hi = row["ndcg_diff"]
        lines.append(f"| {elsa} | {name} | {row['h']} | {row['k']} | "
                     f"{100 * row['ndcg_kept']:.1f}% | {d:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                     f"{100 * row['recall_kept']:.1f}% | {row['cosine']:.3f} | "
                     f"{100 * row['dead']:.1f}% | {row['epochs']} | {row['seconds']:.0f} | "
                     f"{row['peak_mib']:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["elsa", "sae"])
    parser.add_argument("--variants", required=True, help="Comma-separated names.")
    parser.add_argument("--elsa", default="teacher-d1024", help="ELSA the SAEs nest in.")
    parser.add_argument("--cache", type=Path, default=Path("data/experiments"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ease-l2", default="10,20,50,100,200,500,1000",
                        help="EASE ridge strengths tried on the validation users.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("models.train").setLevel(logging.DEBUG)     # a line an epoch
    if os.environ.get("KNOBS_THREADS"):
        torch.set_num_threads(int(os.environ["KNOBS_THREADS"]))
    device = torch.device("cpu")
    ds = load_dataset(DATASET, seed=args.seed)
    split = holdout_split(ds.interactions, args.seed)
    run = {"split": {"train": int(split.train.shape[0]), "validation": len(split.val.users),
                     "test": len(split.test.users), "seed": args.seed},
           "machine": machine_info(device)}
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.stage == "elsa":
        t = time.perf_counter()
        l2s = tuple(float(v) for v in args.ease_l2.split(","))
        ease = select_ease(split.train, split.val, l2s, device)
        e_rec, e_nd = evaluate_heldout(ease.scores, split.test, device)
        report = load_report()
        report.update(run)
        report["ease"] = {"l2": ease.l2, "l2s_tried": list(l2s), "ndcg": mean_se(e_nd)[0],
                          "recall": mean_se(e_rec)[0], "seconds": time.perf_counter() - t}
        write(report)
        for name in args.variants.split(","):
            ecfg = ELSAS[name]
            t = time.perf_counter()
            teacher = ease if ecfg.teacher == "ease" else None
            elsa, hist = train_elsa(split.train, split.val, ecfg, device,
                                    torch.Generator().manual_seed(args.seed), progress=False,
                                    teacher=teacher)
            seconds = time.perf_counter() - t
            rec, nd = evaluate_heldout(elsa, split.test, device)
            row = {"d": ecfg.d, "ndcg": mean_se(nd)[0], "recall": mean_se(rec)[0],
                   "vs_ease": mean_se(nd)[0] / report["ease"]["ndcg"], "epochs": len(hist),
                   "seconds": seconds, "config": dataclasses.asdict(ecfg)}
            save_file({"A": elsa.A.detach().contiguous()},
                      str(args.cache / f"elsa-{name}.safetensors"))
            record("elsa", name, row, run)
            log.info("%s: %s", name, row)
        return
    a = load_file(str(args.cache / f"elsa-{args.elsa}.safetensors"))["A"]
    elsa = ELSA(a.shape[0], a.shape[1])
    elsa.A.data.copy_(a)
    elsa.eval()
    base_rec, base_nd = evaluate_heldout(elsa, split.test, device)
    rng = np.random.default_rng(args.seed)
    for name in args.variants.split(","):
        scfg = SAES[name]
        t = time.perf_counter()
        sae, hist = train_sae(elsa, split.train, split.val, scfg, device,
                              torch.Generator().manual_seed(args.seed), progress=False)
        seconds = time.perf_counter() - t
        sae.eval()
        rec, nd = evaluate_heldout(Recommender(elsa, sae), split.test, device)
        stats = sae_stats(elsa, sae, split, device)
        row = {
            "h": scfg.h, "k": scfg.k, "ndcg_kept": float(np.nanmean(nd) / np.nanmean(base_nd)),
            "recall_kept": float(np.nanmean(rec) / np.nanmean(base_rec)),
            "ndcg_diff": list(paired_bootstrap(nd, base_nd, rng)),
            "recall_diff": list(paired_bootstrap(rec, base_rec, rng)),
            "cosine": stats.cosine, "dead": stats.dead_fraction, "l0": stats.l0,
            "epochs": len(hist), "seconds": seconds, "peak_mib": peak_mib(),
            "config": dataclasses.asdict(scfg)}
        record("sae", f"{args.elsa}/{name}", row, run)
        log.info("%s: %s", name, {k: v for k, v in row.items() if k != "config"})


if __name__ == "__main__":
    main()
