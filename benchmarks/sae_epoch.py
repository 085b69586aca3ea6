"""Which epoch an SAE should keep: the one best by the plain refit's validation fidelity
(what early stopping watches) or the one best as served (the refit measured by the score
metric, as the app and the evaluation use the SAE; shipped since session 11).

In each of K folds one ELSA is trained (the shipped defaults). For each SAE seed the
shipped SAE (one seed: restarts = 1) is trained twice from that seed: as shipped, keeping
the epoch best as served, and without a metric, keeping the epoch best by the plain
fidelity. Training never reads the metric, so both runs are the same run epoch for epoch
(the report checks it); the second SAE is then given the same metric. The two differ only
in the epoch kept, and are compared on the same test users. Writes
reports/sae_epoch.{json,md}.

    .venv/bin/python -m benchmarks.sae_epoch [--folds 5] [--seeds 1,2] [--device auto]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    elsa_folds,
    fmt_paired,
    fold_benchmark,
    sae_row,
    seeded_command,
    write_reports,
)
from models.evaluate import SAEStats, machine_info, sae_stats
from models.metrics import paired_bootstrap
from models.recommender import Recommender
from models.sae import TopKSAE
from models.train import EarlyStopping, evaluate_heldout, score_metric, train_sae

RULES = ("best as served (shipped)", "best by the plain fidelity")


def main() -> None:
    bench = fold_benchmark(__doc__, "sae_epoch", seeds="1,2", needs_metric=True)
    args, seeds, device, data, cfg = (bench.args, bench.seeds, bench.device, bench.data,
                                      bench.cfg)
    shipped = dataclasses.replace(cfg.sae, restarts=1)
    configs = dict(zip(RULES, (shipped, dataclasses.replace(shipped, refine_metric="none")),
                       strict=True))
    ndcg: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *RULES]}
    recall: dict[str, list[np.ndarray]] = {n: [] for n in ["elsa", *RULES]}
    stats: dict[str, list[SAEStats]] = {n: [] for n in RULES}
    per_sae: list[dict[str, Any]] = []
    started = time.perf_counter()
    for fold in elsa_folds(data, cfg, args.folds, device):
        metric = score_metric(fold.elsa, fold.split.train, device)
        recall["elsa"] += [fold.recall] * len(seeds)
        ndcg["elsa"] += [fold.ndcg] * len(seeds)
        for seed in seeds:
            row: dict[str, Any] = {"fold": fold.index, "seed": seed}
            curves = []
            for rule, sae_cfg in configs.items():
                sae, history = train_sae(fold.elsa, fold.split.train, fold.split.val,
                                         sae_cfg, device,
                                         torch.Generator().manual_seed(100 * seed
                                                                       + fold.index),
                                         progress=False)
                if not isinstance(sae, TopKSAE):
                    raise TypeError("the shipped small-data SAE is TopK")
                sae.set_refine_metric(metric)          # both served alike
                r, n = evaluate_heldout(Recommender(fold.elsa, sae), fold.split.test, device)
                st = sae_stats(fold.elsa, sae, fold.split, device)
                recall[rule].append(r)
                ndcg[rule].append(n)
                stats[rule].append(st)
                plain = [h["val_fidelity@20"] for h in history]
                curves.append(plain)
                row[rule] = {"ndcg_kept": float(np.nanmean(n) / np.nanmean(fold.ndcg)),
                             "recall_kept": float(np.nanmean(r) / np.nanmean(fold.recall)),
                             "cosine": st.cosine, "epochs": len(history),
                             "kept_epoch": kept_epoch(history, rule, sae_cfg.min_delta)}
            row["same_run"] = curves[0] == curves[1]
            per_sae.append(row)
            logging.info("fold %d seed %d: %s", fold.index + 1, seed, {
                k: (round(v["ndcg_kept"], 4), round(v["recall_kept"], 4), v["kept_epoch"])
                for k, v in row.items() if isinstance(v, dict)})
    rng = np.random.default_rng(0)
    base_n, base_r = np.concatenate(ndcg["elsa"]), np.concatenate(recall["elsa"])
    rows = {rule: sae_row(ndcg[rule], recall[rule], base_n, base_r, stats[rule], rng)
            for rule in RULES}
    new, old = RULES
    rows[new]["paired_ndcg_vs_plain"] = list(paired_bootstrap(
        np.concatenate(ndcg[new]), np.concatenate(ndcg[old]), rng))
    rows[new]["paired_recall_vs_plain"] = list(paired_bootstrap(
        np.concatenate(recall[new]), np.concatenate(recall[old]), rng))
    rows[new]["better_ndcg"] = sum(r[new]["ndcg_kept"] > r[old]["ndcg_kept"] for r in per_sae)
    rows[new]["same_epoch"] = sum(r[new]["kept_epoch"] == r[old]["kept_epoch"]
                                  for r in per_sae)
    report = {"dataset": args.dataset, "folds": args.folds, "seeds": seeds,
              "device": device.type, "saes": len(per_sae),
              "same_runs": sum(r["same_run"] for r in per_sae), "rules": rows,
              "per_sae": per_sae, "seconds": time.perf_counter() - started,
              "machine": machine_info(device)}
    write_reports(args.out, report, markdown(report))


def kept_epoch(history: list[dict[str, float]], rule: str, min_delta: float) -> int:
    """The epoch `_fit` restored under `rule`, replayed through the same EarlyStopping:
    the first best served fidelity, or early stopping's best plain fidelity (a gain
    counting only above `min_delta`)."""
    served = rule == RULES[0]
    replay = EarlyStopping(len(history) + 1, 0.0 if served else min_delta)
    for epoch, h in enumerate(history):
        replay.update(h["val_fidelity_served@20" if served else "val_fidelity@20"], epoch,
                      torch.nn.Module())
    return replay.best_epoch


def markdown(report: dict[str, Any]) -> list[str]:
    n = report["saes"]
    new, old = RULES
    r = report["rules"]
    lines = [f"# The epoch an SAE keeps, on {report['dataset']}", "",
             f"{report['folds']}-fold over users; per fold one ELSA and {len(report['seeds'])}"
             f" SAE seed(s) ({', '.join(map(str, report['seeds']))}), {n} SAEs in all, each "
             f"trained twice from its seed on {report['device']}: the two runs were the same "
             f"epoch for epoch in {report['same_runs']} of {n}. Both SAEs are served with the "
             "score metric; they differ only in the epoch kept. Kept: ELSA+SAE / ELSA, "
             "pooled over all SAEs' test users. Paired differences: per user and SAE, 95% "
             "bootstrap CI.", "",
             "| epoch kept | nDCG kept | Recall kept | paired nDCG vs ELSA | reconstruction "
             "cosine |", "|---|---|---|---|---|"]
    for rule in RULES:
        lines.append(f"| {rule} | {100 * r[rule]['ndcg_kept']:.1f}% | "
                     f"{100 * r[rule]['recall_kept']:.1f}% | {fmt_paired(r[rule]['paired_ndcg'])}"
                     f" | {r[rule]['cosine']:.3f} |")
    lines += ["", f"Best as served against best by the plain fidelity, paired: nDCG@20 "
              f"{fmt_paired(r[new]['paired_ndcg_vs_plain'])}, Recall@20 "
              f"{fmt_paired(r[new]['paired_recall_vs_plain'])}; nDCG@20 higher for "
              f"{r[new]['better_ndcg']} of {n} SAEs; the same epoch for "
              f"{r[new]['same_epoch']} of {n}.", "",
              "Per SAE, nDCG@20 / Recall@20 kept (epoch kept, 0-based, of those trained):", "",
              "| fold | seed | " + " | ".join(RULES) + " |", "|---|---|---|---|"]
    for row in report["per_sae"]:
        cells = [f"{100 * row[k]['ndcg_kept']:.1f}% / {100 * row[k]['recall_kept']:.1f}% "
                 f"({row[k]['kept_epoch']} of {row[k]['epochs']})" for k in RULES]
        lines.append(f"| {row['fold'] + 1} | {row['seed']} | " + " | ".join(cells) + " |")
    lines += ["", seeded_command("sae_epoch", report)]
    return lines


if __name__ == "__main__":
    main()
