"""Recall@k / nDCG@k on hand-computed cases (method.md §1), top-n masking, the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.metrics import mean_se, paired_bootstrap, recall_ndcg_at_k, top_n, top_n_owned


def targets(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    m = np.zeros((len(rows), n_items), dtype=np.float32)
    for r, items in enumerate(rows):
        m[r, items] = 1.0
    return sp.csr_matrix(m)


def test_perfect_ranking_scores_one() -> None:
    ranked = np.array([[2, 5, 0, 1, 3, 4]])
    rec, nd = recall_ndcg_at_k(ranked, targets([[2, 5]], 6), k=3)
    assert rec[0] == pytest.approx(1.0) and nd[0] == pytest.approx(1.0)


def test_no_hit_scores_zero() -> None:
    ranked = np.array([[0, 1, 2]])
    rec, nd = recall_ndcg_at_k(ranked, targets([[4, 5]], 6), k=3)
    assert rec[0] == 0.0 and nd[0] == 0.0


def test_known_dcg_values() -> None:
    ranked = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    rec, nd = recall_ndcg_at_k(ranked, targets([[1], [0, 2]], 5), k=4)
    # user 0: one hit at rank 2 -> 1/log2(3); ideal 1
    assert nd[0] == pytest.approx(1 / math.log2(3))
    assert rec[0] == pytest.approx(1.0)
    # user 1: hits at ranks 1 and 3 -> (1 + 1/2) / (1 + 1/log2(3))
    assert nd[1] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert nd[1] == pytest.approx(0.9197207891481876)


def test_denominator_is_min_of_k_and_targets() -> None:
    n_items = 40
    ranked = np.arange(n_items)[None, :].repeat(2, axis=0)
    # user 0: 25 targets, the first 20 ranked are all targets -> recall 1, ndcg 1
    # user 1: 4 targets, 2 found in the top 20 -> recall 2/4
    tg = targets([list(range(25)), [0, 5, 30, 31]], n_items)
    rec, nd = recall_ndcg_at_k(ranked, tg, k=20)
    assert rec[0] == pytest.approx(1.0) and nd[0] == pytest.approx(1.0)
    assert rec[1] == pytest.approx(0.5)
    ideal = sum(1 / math.log2(i + 2) for i in range(4))
    assert nd[1] == pytest.approx((1 + 1 / math.log2(7)) / ideal)


def test_only_the_top_k_count() -> None:
    ranked = np.array([[0, 1, 2, 3, 4]])
    rec, nd = recall_ndcg_at_k(ranked, targets([[3, 4]], 5), k=3)
    assert rec[0] == 0.0 and nd[0] == 0.0


def test_users_without_targets_are_nan() -> None:
    ranked = np.array([[0, 1], [0, 1]])
    rec, nd = recall_ndcg_at_k(ranked, targets([[], [1]], 3), k=2)
    assert math.isnan(rec[0]) and math.isnan(nd[0])
    assert rec[1] == 1.0


def test_top_n_orders_by_score_and_masks_excluded_items() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert top_n(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    exclude = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]])
    got = top_n(scores, 3, exclude=exclude)
    assert got.tolist() == [[2, 4, 0], [1, 2, 3]]
    assert top_n(scores, 99).shape == (2, 5)                   # n capped at the item count


def test_mean_se() -> None:
    mean, se = mean_se(np.array([1.0, 2.0, 3.0, np.nan]))
    assert mean == pytest.approx(2.0)
    assert se == pytest.approx(1.0 / math.sqrt(3))
    assert math.isnan(mean_se(np.array([1.0]))[1])
    assert math.isnan(mean_se(np.array([np.nan]))[0])


def test_paired_bootstrap_ci_contains_the_mean_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200)
    b = a - 0.05 + 0.1 * rng.standard_normal(200)
    diff, lo, hi = paired_bootstrap(a, b, np.random.default_rng(1), n_boot=2000)
    assert diff == pytest.approx(float(np.mean(a - b)))
    assert lo <= diff <= hi and lo < hi
    assert 0.0 < lo                                            # a real +0.05 is detected
    again = paired_bootstrap(a, b, np.random.default_rng(1), n_boot=2000)
    other = paired_bootstrap(a, b, np.random.default_rng(2), n_boot=2000)
    assert again == (diff, lo, hi)
    assert other[0] == diff and other[1:] != (lo, hi)


def test_paired_bootstrap_drops_nan_pairs_and_needs_one() -> None:
    a = np.array([1.0, np.nan, 0.5])
    b = np.array([0.0, 0.3, np.nan])
    diff, lo, hi = paired_bootstrap(a, b, np.random.default_rng(0), n_boot=100)
    assert (diff, lo, hi) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no users"):
        paired_bootstrap(np.array([np.nan]), np.array([1.0]), np.random.default_rng(0))


def test_top_n_owned_equals_top_n_with_a_mask() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(50, generator=g)
    taken = torch.tensor([3, 7, int(scores.argmax())])
    mask = torch.zeros(1, 50, dtype=torch.bool)
    mask[0, taken] = True
    expected = top_n(scores[None], 10, exclude=mask)[0]
    owned = scores.clone()
    assert torch.equal(top_n_owned(owned, 10, taken), expected)
    assert torch.isinf(owned[taken]).all()                  # written in place, as documented
    assert torch.equal(top_n_owned(scores.clone(), 80, torch.tensor([], dtype=torch.long)),
                       scores.topk(50).indices)
