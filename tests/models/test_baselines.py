"""Popularity and EASE: EASE's closed form, zero diagonal, and that it beats popularity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.baselines import EASE, Popularity
from models.data.interactions import Interactions, holdout_split
from models.train import evaluate_heldout


@pytest.fixture
def small() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    return sp.csr_matrix((rng.random((30, 12)) < 0.4).astype(np.float32))


def test_popularity_scores_are_item_counts_for_everyone(small: sp.csr_matrix) -> None:
    pop = Popularity(small)
    x = torch.zeros(3, 12)
    s = pop.scores(x)
    assert s.shape == (3, 12)
    counts = torch.from_numpy(np.asarray(small.sum(axis=0)).ravel().astype(np.float32))
    for row in s:
        assert torch.equal(row, counts)


@pytest.mark.parametrize("users", [30, 3], ids=["more users than items (item side)",
                                                  "few users, many items (Woodbury)"])
@pytest.mark.parametrize("l2", [0.5, 3.0, 500.0])
def test_ease_has_zero_diagonal_and_the_closed_form(small: sp.csr_matrix, users: int,
                                                    l2: float) -> None:
    train = small[:users]
    ease = EASE(train, l2)
    assert ease.B.shape == (12, 12)
    assert torch.equal(torch.diagonal(ease.B), torch.zeros(12))
    gram = (train.T @ train).toarray().astype(np.float64) + l2 * np.eye(12)
    p = np.linalg.inv(gram)
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(ease.B.numpy(), expected, rtol=1e-3, atol=1e-5)
    x = torch.from_numpy(small[:4].toarray())
    torch.testing.assert_close(ease.scores(x), x @ ease.B)


def test_ease_refuses_a_ridge_that_is_not_positive(small: sp.csr_matrix) -> None:
    with pytest.raises(ValueError, match="ridge strength > 0, got 0"):
        EASE(small, 0.0)


def test_ease_beats_popularity_on_synthetic(interactions: Interactions) -> None:
    split = holdout_split(interactions, seed=0)
    cpu = torch.device("cpu")
    pop = np.nanmean(evaluate_heldout(Popularity(split.train).scores, split.test, cpu)[1])
    ease = np.nanmean(evaluate_heldout(EASE(split.train, 50.0).scores, split.test, cpu)[1])
    assert ease > pop + 0.1
