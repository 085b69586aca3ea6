"""Loss functions on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    cosine_loss,
    gaussian_kl,
    l1_sparsity,
    l2_loss,
    multinomial_nll,
    normalized_mse,
)


def test_normalized_mse_is_zero_for_proportional_vectors() -> None:
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 2.0, 0.0, 1.0]])
    assert float(normalized_mse(3.7 * x, x)) == pytest.approx(0.0, abs=1e-12)


def test_normalized_mse_hand_values() -> None:
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(normalized_mse(e1, e2)) == pytest.approx(2.0)       # orthogonal unit vectors
    assert float(normalized_mse(-e1, e1)) == pytest.approx(4.0)      # opposite
    batch = normalized_mse(torch.cat([e1, e1]), torch.cat([e1, e2]))
    assert float(batch) == pytest.approx(1.0)                        # batch mean of 0 and 2


def test_cosine_loss() -> None:
    u = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    assert float(cosine_loss(u, u)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_loss(5 * u, u)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_loss(-u, u)) == pytest.approx(2.0)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(cosine_loss(a, b)) == pytest.approx(1.0)
    c = torch.tensor([[1.0, 1.0]])
    assert float(cosine_loss(c, a)) == pytest.approx(1 - 1 / math.sqrt(2))


def test_l2_loss_is_the_mean_squared_error() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert float(l2_loss(a, b)) == pytest.approx((4 + 9) / 4)
    assert float(l2_loss(a, a)) == 0.0


def test_l1_sparsity_is_the_batch_mean_of_l1_norms() -> None:
    code = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert float(l1_sparsity(code)) == pytest.approx((3 + 0 + 1) / 3)


def test_multinomial_nll_with_uniform_logits() -> None:
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    logits = torch.zeros(2, 4)
    # each positive costs log 4; users have 2 and 1 positives
    assert float(multinomial_nll(logits, target)) == pytest.approx(1.5 * math.log(4))
    better = torch.tensor([[5.0, 5.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    assert float(multinomial_nll(better, target)) < float(multinomial_nll(logits, target))


def test_gaussian_kl() -> None:
    zeros = torch.zeros(3, 4)
    assert float(gaussian_kl(zeros, zeros)) == pytest.approx(0.0)
    # mu = 1, logvar = 0: 0.5 per dimension
    assert float(gaussian_kl(torch.ones(2, 4), torch.zeros(2, 4))) == pytest.approx(2.0)
    # mu = 0, var = e: 0.5 (e - 1 - 1) per dimension
    kl = gaussian_kl(torch.zeros(1, 3), torch.ones(1, 3))
    assert float(kl) == pytest.approx(3 * 0.5 * (math.e - 2))
