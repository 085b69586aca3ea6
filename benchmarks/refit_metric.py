"""What the SAE refit's metric (SAEConfig.refine_metric) does to ranking and reconstruction.

In each of K folds one ELSA is trained (the shipped defaults); for each SAE seed one SAE is
trained on it (the shipped defaults, trained once: not the best of `restarts`, and trained
without a metric, so that none of the metrics compared chose the epoch it keeps), and
that same SAE is then measured with each refit metric: "none" (the plain least squares),
"top-items" (shipped, prior 0.1: items no training user gets in ELSA's top 20 weigh 0.1
against 1 per user who does) and "top-items" with prior 5 (closer to weighing every item's
score alike). The comparison is paired twice over: the same test users and the same SAE.
Writes reports/refit_metric.{json,md}.

    .venv/bin/python -m benchmarks.refit_metric [--folds 5] [--seeds 1,2,3] [--device auto]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from benchmarks.common import (
    ElsaFold,
    ServeWays,
    fmt_paired,
    fold_benchmark,
    fold_table,
    grid_intro,
    grid_report,
    grid_rows,
    seeded_command,
    serve_grid,
    write_reports,
)
from models.metrics import paired_bootstrap
from models.train import score_metric

PRIORS = {"none": None, "top-items (shipped, prior 0.1)": 0.1, "top-items, prior 5": 5.0}


def main() -> None:
    bench = fold_benchmark(__doc__, "refit_metric", seeds="1,2,3", needs_metric=True)

    def ways(fold: ElsaFold) -> ServeWays:
        metrics = {name: None if prior is None else score_metric(
            fold.elsa, fold.split.train, bench.device, prior=prior)
            for name, prior in PRIORS.items()}
        return {name: lambda sae, m=metric: sae.set_refine_metric(m)
                for name, metric in metrics.items()}

    # one SAE per seed (not the shipped best of `restarts`): the metric's effect is
    # compared SAE by SAE; its epoch is kept on the plain fidelity (training without a
    # metric), not on the shipped metric's
    grid = serve_grid(bench, dataclasses.replace(bench.cfg.sae, restarts=1,
                                                 refine_metric="none"), ways)
    rng = np.random.default_rng(0)
    rows = grid_rows(grid, rng)
    none_n = np.concatenate(grid.ndcg["none"])
    for name in PRIORS:
        rows[name]["paired_ndcg_vs_none"] = list(
            paired_bootstrap(np.concatenate(grid.ndcg[name]), none_n, rng))
        rows[name]["better_than_none"] = sum(
            r[name]["ndcg_kept"] > r["none"]["ndcg_kept"] for r in grid.per_sae)
    report = grid_report(bench, rows, grid)
    write_reports(bench.args.out, report, markdown(report))


def markdown(report: dict[str, Any]) -> list[str]:
    n = report["saes"]
    lines = [f"# The SAE refit's metric on {report['dataset']}", "",
             f"{grid_intro(report)}. Each SAE is measured with every metric, so the rows differ "
             "only in how its codes are refit. Kept: ELSA+SAE / ELSA, pooled over all SAEs' "
             "test users. Paired differences: per user and SAE, 95% bootstrap CI.", "",
             "| refit metric | nDCG kept | Recall kept | paired nDCG vs ELSA | paired nDCG vs "
             "none | SAEs better than none | reconstruction cosine |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        better = "-" if name == "none" else f"{r['better_than_none']} of {n}"
        vs_none = "-" if name == "none" else fmt_paired(r["paired_ndcg_vs_none"])
        lines.append(f"| {name} | {100 * r['ndcg_kept']:.1f}% | {100 * r['recall_kept']:.1f}% "
                     f"| {fmt_paired(r['paired_ndcg'])} | {vs_none} | {better} | "
                     f"{r['cosine']:.3f} |")
    lines += ["", *fold_table(report)]
    lines += ["", seeded_command("refit_metric", report)]
    return lines


if __name__ == "__main__":
    main()
