"""How much of ELSA's ranking survives an SAE that was never trained (random unit decoder
rows, encoder = their transpose, b_dec = mean standardised training vector), next to the
trained default, over K folds. A control for reading the ELSA+SAE numbers: the gap
between the two is what SAE training buys. Writes reports/sae_untrained.json.

    .venv/bin/python -m benchmarks.sae_untrained [--dataset ml-latest-small] [--folds 5]
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import torch

from benchmarks.common import fold_benchmark
from models.data.interactions import kfold_splits
from models.evaluate import machine_info, sae_stats
from models.recommender import Recommender
from models.train import (
    evaluate_heldout,
    make_sae,
    sae_training_vectors,
    train_elsa,
    train_sae,
)


def main() -> None:
    bench = fold_benchmark(__doc__, "sae_untrained.json")
    args, device, data, cfg = bench.args, bench.device, bench.data, bench.cfg
    names = ("trained (shipped)", "untrained h=4096", "untrained h=16384")
    ndcg: dict[str, list[np.ndarray]] = {n: [] for n in ("elsa", *names)}
    cosine: dict[str, list[float]] = {n: [] for n in names}
    for f, split in enumerate(kfold_splits(data, args.folds, cfg.seed)):
        gen = torch.Generator().manual_seed(cfg.seed + f)
        elsa, _ = train_elsa(split.train, split.val, cfg.elsa, device, gen, progress=False)
        ndcg["elsa"].append(evaluate_heldout(elsa, split.test, device)[1])
        trained, _ = train_sae(elsa, split.train, split.val, cfg.sae, device, gen,
                               progress=False)
        vectors = sae_training_vectors(elsa, split.train, cfg.sae, device, gen)
        saes = {"trained (shipped)": trained}
        for h in (4096, 16384):
            sae = make_sae(elsa.d, dataclasses.replace(cfg.sae, h=h), gen).to(device)
            sae.init_decoder_bias_(vectors)
            saes[f"untrained h={h}"] = sae.eval()
        for name, sae in saes.items():
            ndcg[name].append(evaluate_heldout(Recommender(elsa, sae), split.test, device)[1])
            cosine[name].append(sae_stats(elsa, sae, split, device).cosine)
            logging.info("fold %d %s: %.4f (ELSA %.4f)", f + 1, name,
                         np.nanmean(ndcg[name][-1]), np.nanmean(ndcg["elsa"][-1]))
    base = float(np.nanmean(np.concatenate(ndcg["elsa"])))
    report = {"dataset": args.dataset, "folds": args.folds, "elsa_ndcg@20": base,
              "sae": {n: {"ndcg@20": float(np.nanmean(np.concatenate(ndcg[n]))),
                          "kept": float(np.nanmean(np.concatenate(ndcg[n]))) / base,
                          "cosine": float(np.mean(cosine[n]))} for n in names},
              "machine": machine_info(device)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for n, r in report["sae"].items():
        print(f"{n}: nDCG@20 {r['ndcg@20']:.4f}, kept {100 * r['kept']:.1f}%, "
              f"cosine {r['cosine']:.3f}")


if __name__ == "__main__":
    main()
