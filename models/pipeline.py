"""What `knobs train` does, as functions: split, train ELSA, train the SAE, measure;
then label the SAE's neurons with concepts (method.md §5)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from models.concepts import (
    MIN_LIFT,
    ConceptMap,
    build_vocabulary,
    code_density,
    elsa_item_rows,
    item_codes,
    map_concepts,
)
from models.config import TrainConfig
from models.data.interactions import Interactions, holdout_split
from models.elsa import ELSA
from models.evaluate import sae_stats
from models.metrics import mean_se
from models.recommender import Recommender
from models.sae import SparseAutoencoder
from models.train import History, evaluate_heldout, train_elsa_for, train_sae

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
    elsa, h_elsa = train_elsa_for(split.train, split.val, cfg, device, generator, progress)
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


MIN_CONCEPT_ITEMS = 20
"""A concept must be carried by at least this many items to become a label (the paper
asks for 100 tag applications on ML-25M; ml-latest-small is ~1/60 of its size)."""


def label_knobs(elsa: ELSA, sae: SparseAutoencoder, data: Interactions,
                catalog: pd.DataFrame, tag_events: pd.DataFrame | None,
                device: torch.device, hetrec_taggers: Mapping[str, int] | None = None
                ) -> tuple[ConceptMap, dict[str, Any]]:
    """The bundle's concept map: vocabulary from all of the catalog's metadata (the served
    model has no test users to hide tags from), the §5 mapping, and how many of the
    dataset's users have each neuron active. Returns the map and its settings."""
    started = time.perf_counter()
    vocab = build_vocabulary(catalog, tag_events, min_items=MIN_CONCEPT_ITEMS,
                             hetrec_taggers=hetrec_taggers)
    cmap = map_concepts(item_codes(elsa, sae, data.n_items, device), vocab,
                        item_rows=elsa_item_rows(elsa, sae))
    cmap = dataclasses.replace(cmap, density=code_density(elsa, sae, data.matrix, device))
    summary = cmap.summary()
    log.info("labels: %d concepts, %.0f%% of %d live neurons with precision >= 0.2, median "
             "%.2f (%.1f s)", summary["concepts"], 100 * summary["coverage"],
             summary["live"], summary["median_precision"], time.perf_counter() - started)
    return cmap, {"min_items": MIN_CONCEPT_ITEMS, "min_lift": MIN_LIFT,
                  "hetrec_taggers_checked": hetrec_taggers is not None,
                  "kinds": sorted(set(vocab.kinds)), "labels": summary}
