"""Ranking metrics of method.md §1, computed per user so that means, standard errors and
paired differences come from the same numbers."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def top_n(scores: torch.Tensor, n: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the n highest scores per row; `exclude` ([batch, items] bool or 0/1)
    masks items (the user's inputs) to -inf first. scores: [batch, items] -> [batch, n]."""
    if exclude is not None:
        scores = scores.masked_fill(exclude.bool(), float("-inf"))
    return scores.topk(min(n, scores.shape[-1]), dim=-1).indices


def top_n_owned(scores: torch.Tensor, n: int, taken: torch.Tensor) -> torch.Tensor:
    """top_n for one user whose score vector the caller owns (it is overwritten): the
    `taken` item indices ([m] long) set to -inf in place, then topk. scores: [items] ->
    [n]. One pass over the items fewer than a mask (serving hot path, method.md §7)."""
    if taken.numel():
        scores.index_fill_(0, taken, float("-inf"))
    return scores.topk(min(n, scores.shape[-1])).indices


def recall_ndcg_at_k(ranked: np.ndarray, targets: sp.csr_matrix, k: int = 20
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@k and nDCG@k with binary gains.

    ranked: [users, >=k] item indices, best first; targets: [users, items] CSR.
    Recall@k = hits / min(k, |targets|); the ideal DCG has min(k, |targets|) hits.
    Users without targets get NaN.
    """
    ranked = ranked[:, :k]
    n_users = ranked.shape[0]
    rows = np.repeat(np.arange(n_users), ranked.shape[1])
    hits = np.asarray(targets[rows, ranked.ravel()]).reshape(ranked.shape) > 0
    n_targets = np.diff(targets.indptr)
    denom = np.minimum(k, n_targets).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: ranked.shape[1]]).sum(axis=1)
    idcg = np.array([discounts[: int(m)].sum() for m in denom])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(denom > 0, hits.sum(axis=1) / denom, np.nan)
        ndcg = np.where(denom > 0, dcg / idcg, np.nan)
    return recall, ndcg


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean, ignoring NaN."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return float("nan"), float("nan")
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def paired_bootstrap(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                     n_boot: int = 10_000, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the per-user difference a - b with a percentile bootstrap CI over users.

    Returns (diff, ci_low, ci_high)."""
    d = a - b
    d = d[~np.isnan(d)]
    if len(d) == 0:
        raise ValueError("no users with both values to compare")
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(d.mean()), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))
