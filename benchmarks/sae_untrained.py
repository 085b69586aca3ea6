"""Controls for reading the ELSA+SAE numbers, over K folds: the trained SAE next to SAEs
that were never trained (random unit decoder rows, encoder = their transpose, b_dec = the
mean standardised training vector), each read three ways:

- plain encoder: the k largest pre-activations (method.md §4, the paper's SAE);
- refit top k: the same k latents, values refitted by non-negative least squares;
- refit 2k candidates (shipped): NNLS over the encoder's 2k largest, the k largest kept
  and refitted (models/sae.py, TopKSAE.encode).

Both refits weigh the residual with the trained SAE's refit metric when it has one (the
untrained SAEs get the same metric).

The gap between trained and untrained is what SAE training buys; the gap between the
rows of one SAE is what the refit buys with the weights held fixed. Writes
reports/sae_untrained.{json,md}.

    .venv/bin/python -m benchmarks.sae_untrained [--dataset ml-latest-small] [--folds 5]
(about 12 minutes on 2 CPU cores)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import numpy as np

from benchmarks.common import elsa_folds, fmt_paired, fold_benchmark, sae_row, write_reports
from models.evaluate import machine_info, sae_stats
from models.recommender import Recommender
from models.sae import TopKSAE
from models.train import (
    evaluate_heldout,
    make_sae,
    sae_training_vectors,
    train_sae,
)


def readings(sae: TopKSAE, k: int) -> dict[str, TopKSAE]:
    """The same weights read by the plain encoder, a top-k refit and the 2k-candidate
    refit (eval mode)."""
    out = {}
    for name, steps, candidates in (("plain encoder", 0, 0),
                                    ("refit top k", sae.refine_steps or 50, 0),
                                    ("refit 2k candidates", sae.refine_steps or 50, 2 * k)):
        copy_ = copy.deepcopy(sae).eval()
        copy_.refine_steps, copy_.refine_candidates = steps, candidates
        out[name] = copy_
    return out


def main() -> None:
    bench = fold_benchmark(__doc__, "sae_untrained")
    args, device, data, cfg = bench.args, bench.device, bench.data, bench.cfg
    ndcg: dict[str, list[np.ndarray]] = {"elsa": []}
    recall: dict[str, list[np.ndarray]] = {"elsa": []}
    stats: dict[str, list[Any]] = {}
    for fold in elsa_folds(data, cfg, args.folds, device):
        f, split, elsa, gen = fold.index, fold.split, fold.elsa, fold.generator
        recall["elsa"].append(fold.recall)
        ndcg["elsa"].append(fold.ndcg)
        trained, _ = train_sae(elsa, split.train, split.val, cfg.sae, device, gen,
                               progress=False)
        vectors = sae_training_vectors(elsa, split.train, cfg.sae, device, gen)
        saes = {"trained": trained}
        for h in (4096, 16384):
            sae = make_sae(elsa.d, dataclasses.replace(cfg.sae, h=h), gen).to(device)
            sae.init_decoder_bias_(vectors)
            if isinstance(sae, TopKSAE) and isinstance(trained, TopKSAE):
                sae.set_refine_metric(trained.refine_metric)   # the same refit as trained
            saes[f"untrained h={h}"] = sae
        for kind, sae in saes.items():
            assert isinstance(sae, TopKSAE)
            for reading, model in readings(sae, cfg.sae.k).items():
                name = f"{kind}, {reading}"
                r, n = evaluate_heldout(Recommender(elsa, model), split.test, device)
                recall.setdefault(name, []).append(r)
                ndcg.setdefault(name, []).append(n)
                stats.setdefault(name, []).append(sae_stats(elsa, model, split, device))
                logging.info("fold %d %s: %.4f (ELSA %.4f)", f + 1, name, np.nanmean(n),
                             np.nanmean(ndcg["elsa"][-1]))
    rng = np.random.default_rng(0)
    base_n, base_r = np.concatenate(ndcg["elsa"]), np.concatenate(recall["elsa"])
    rows: dict[str, Any] = {name: sae_row(ndcg[name], recall[name], base_n, base_r,
                                          stats[name], rng) for name in stats}
    report = {"dataset": args.dataset, "folds": args.folds, "test_users": len(base_n),
              "elsa": {"ndcg@20": float(np.nanmean(base_n)),
                       "recall@20": float(np.nanmean(base_r))},
              "sae": rows, "config": dataclasses.asdict(cfg.sae),
              "machine": machine_info(device)}
    lines = [f"# Trained and untrained SAEs, three ways to read a code ({args.dataset})", "",
             f"{args.folds}-fold over users ({len(base_n)} test users; ELSA nDCG@20 "
             f"{report['elsa']['ndcg@20']:.4f}, Recall@20 {report['elsa']['recall@20']:.4f})."
             f" TopK k = {cfg.sae.k}. Untrained: random unit decoder rows, encoder = their "
             "transpose, b_dec = mean. Paired: per-user nDCG@20 difference to ELSA, 95% "
             "bootstrap CI. `python -m benchmarks.sae_untrained` regenerates this.", "",
             "| SAE, reading | nDCG@20 kept | Recall@20 kept | paired nDCG diff [95% CI] "
             "| cosine | L0 | dead |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {100 * r['ndcg_kept']:.1f}% | {100 * r['recall_kept']:.1f}%"
                     f" | {fmt_paired(r['paired_ndcg'])} | {r['cosine']:.3f} | "
                     f"{r['l0']:.1f} | {100 * r['dead_fraction']:.1f}% |")
    write_reports(args.out, report, lines)


if __name__ == "__main__":
    main()
