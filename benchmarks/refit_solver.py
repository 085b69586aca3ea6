"""How the SAE refit's least squares are solved (SAEConfig.refine_solver): plain
projected-gradient steps (the shipped default) against the same number of accelerated ones
(FISTA, the option added in session 12), and against a near-exact solution.

In each of K folds one ELSA is trained (the shipped defaults). For each SAE seed one SAE is
trained on it: the shipped SAE with one seed (restarts = 1) and the old solver, so that the
epoch it keeps was chosen as served with projected-gradient steps (a choice that favours the
old solver, if any). That same SAE is then served three ways, differing only in the refit's
solver and steps; the comparison is paired twice over: the same test users and the same SAE.
"score error": the refit's objective as served, the residual of the test users' standardised
embeddings measured by the score metric, relative to the same measure of the embedding
itself (mean over users). Writes reports/refit_solver.{json,md}.

    .venv/bin/python -m benchmarks.refit_solver [--folds 5] [--seeds 1,2] [--device auto]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
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
from models.elsa import ELSA
from models.metrics import paired_bootstrap
from models.sae import TopKSAE, standardize
from models.train import dense_rows

OLD = "projected-gradient, 50 steps (shipped; trained with)"
SOLVERS = {OLD: ("projected-gradient", 50),
           "accelerated, 50 steps": ("accelerated", 50),
           "accelerated, 500 steps (near exact)": ("accelerated", 500)}


@torch.no_grad()
def score_error(elsa: ELSA, sae: TopKSAE, inputs: Any, device: torch.device) -> float:
    """Mean over users of r M r / v M v: r the refit's residual of the standardised
    embedding (after b_dec), v that embedding (after b_dec), M the score metric."""
    if sae.refine_metric is None:
        raise ValueError("score_error needs the SAE's refit metric")
    u = elsa.encode(dense_rows(inputs, np.arange(inputs.shape[0]), device))
    v = standardize(u).u_std - sae.b_dec
    r = v - sae.encode(u).code @ sae.W_dec
    m = sae.refine_metric
    return float((((r @ m) * r).sum(-1) / ((v @ m) * v).sum(-1)).mean())


def set_solver(solver: str, steps: int) -> Callable[[TopKSAE], None]:
    def set_up(sae: TopKSAE) -> None:
        sae.refine_solver, sae.refine_steps = solver, steps
    return set_up


def main() -> None:
    bench = fold_benchmark(__doc__, "refit_solver", seeds="1,2", needs_metric=True)
    trained = dataclasses.replace(bench.cfg.sae, restarts=1, refine_steps=50,
                                  refine_solver="projected-gradient")
    grid = serve_grid(bench, trained,
                      lambda fold: {name: set_solver(*how) for name, how in SOLVERS.items()},
                      extra=lambda fold, sae: {"score_error": score_error(
                          fold.elsa, sae, fold.split.test.input, bench.device)})
    rng = np.random.default_rng(0)
    rows = grid_rows(grid, rng)
    old_n, old_r = np.concatenate(grid.ndcg[OLD]), np.concatenate(grid.recall[OLD])
    for name in SOLVERS:
        rows[name]["paired_ndcg_vs_old"] = list(
            paired_bootstrap(np.concatenate(grid.ndcg[name]), old_n, rng))
        rows[name]["paired_recall_vs_old"] = list(
            paired_bootstrap(np.concatenate(grid.recall[name]), old_r, rng))
        rows[name]["better_than_old"] = sum(
            r[name]["ndcg_kept"] > r[OLD]["ndcg_kept"] for r in grid.per_sae)
        rows[name]["worse_than_old"] = sum(
            r[name]["ndcg_kept"] < r[OLD]["ndcg_kept"] for r in grid.per_sae)
        rows[name]["score_error"] = float(np.mean([r[name]["score_error"]
                                                   for r in grid.per_sae]))
    report = grid_report(bench, rows, grid)
    write_reports(bench.args.out, report, markdown(report))


def markdown(report: dict[str, Any]) -> list[str]:
    n = report["saes"]
    lines = [f"# The SAE refit's solver on {report['dataset']}", "",
             f"{grid_intro(report)}, each trained with the old solver and served three ways: "
             "the rows differ only in how its codes' least squares are solved. Kept: "
             "ELSA+SAE / ELSA, pooled over all SAEs' test users. Paired differences: per user "
             "and SAE, 95% bootstrap CI. Score error: the refit's residual as served, "
             "relative (see the benchmark's docstring).", "",
             "| refit solver | score error | nDCG kept | Recall kept | paired nDCG vs ELSA | "
             "paired nDCG vs old | paired Recall vs old | SAEs better / worse | "
             "reconstruction cosine |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        old = name == OLD
        tally = f"{r['better_than_old']} / {r['worse_than_old']} of {n}"
        lines.append(
            f"| {name} | {r['score_error']:.4f} | {100 * r['ndcg_kept']:.1f}% | "
            f"{100 * r['recall_kept']:.1f}% | {fmt_paired(r['paired_ndcg'])} | "
            f"{'-' if old else fmt_paired(r['paired_ndcg_vs_old'])} | "
            f"{'-' if old else fmt_paired(r['paired_recall_vs_old'])} | "
            f"{'-' if old else tally} | "
            f"{r['cosine']:.3f} |")
    lines += ["", *fold_table(report, recall=True)]
    lines += ["", seeded_command("refit_solver", report)]
    return lines


if __name__ == "__main__":
    main()
