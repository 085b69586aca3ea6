"""What `knobs train` does, as a function: split, train ELSA, train the SAE, measure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from models.config import TrainConfig
from models.data.interactions import Interactions, holdout_split
from models.elsa import ELSA
from models.evaluate import sae_stats
from models.metrics import mean_se
from models.recommender import Recommender
from models.sae import SparseAutoencoder
from models.train import History, evaluate_heldout, train_elsa, train_sae

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """elsa, sae: trained modules (eval mode); quality: held-out test metrics;
    history: per-epoch records of both trainers."""

    elsa: ELSA
    sae: SparseAutoencoder
    quality: dict[str, Any]
    history: dict[str, History]


def train_models(data: Interactions, cfg: TrainConfig, device: torch.device,
                 progress: bool = True) -> Trained:
    """One seeded 80/10/10 user split (method.md §1): ELSA, then the SAE on it, early
    stopping on the validation users; the test users give the bundle's quality numbers."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(cfg.seed)
    split = holdout_split(data, cfg.seed)
    elsa, h_elsa = train_elsa(split.train, split.val, cfg.elsa, device, generator, progress)
    sae, h_sae = train_sae(elsa, split.train, split.val, cfg.sae, device, generator, progress)
    quality: dict[str, Any] = {"split": {"train": int(split.train.shape[0]),
                                         "validation": len(split.val.users),
                                         "test": len(split.test.users), "seed": cfg.seed}}
    for name, model in (("elsa", elsa), ("elsa+sae", Recommender(elsa, sae))):
        rec, nd = evaluate_heldout(model, split.test, device)
        r, r_se = mean_se(rec)
        n, n_se = mean_se(nd)
        quality[name] = {"recall@20": r, "recall@20_se": r_se, "ndcg@20": n,
                         "ndcg@20_se": n_se}
    stats = sae_stats(elsa, sae, split, device)
    quality["elsa+sae"].update(cosine=stats.cosine, l0=stats.l0,
                               dead_fraction=stats.dead_fraction)
    quality["train_seconds"] = time.perf_counter() - started
    quality["epochs"] = {"elsa": len(h_elsa), "sae": len(h_sae)}
    log.info("test nDCG@20: ELSA %.4f, ELSA+SAE %.4f (cosine %.3f, dead %.1f%%)",
             quality["elsa"]["ndcg@20"], quality["elsa+sae"]["ndcg@20"], stats.cosine,
             100 * stats.dead_fraction)
    return Trained(elsa, sae, quality, {"elsa": h_elsa, "sae": h_sae})
