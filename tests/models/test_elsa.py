"""ELSA (method.md §2): unit rows, tangent projection, the forward formula, sparse input."""

from __future__ import annotations

import pytest
import torch

from models.elsa import ELSA
from models.recommender import Recommender


def test_rows_are_unit_norm_at_init_and_after_normalize(generator: torch.Generator) -> None:
    model = ELSA(40, 8, generator)
    assert model.A.shape == (40, 8) and (model.n_items, model.d) == (40, 8)
    torch.testing.assert_close(model.A.norm(dim=1), torch.ones(40))
    with torch.no_grad():
        model.A.mul_(torch.linspace(0.1, 7.0, 40).unsqueeze(1))
    model.normalize_()
    torch.testing.assert_close(model.A.norm(dim=1), torch.ones(40))


def test_project_grad_makes_the_gradient_orthogonal_to_each_row(
        generator: torch.Generator) -> None:
    model = ELSA(30, 6, generator)
    x = (torch.rand(5, 30, generator=generator) < 0.3).float()
    model(x).pow(2).sum().backward()
    assert model.A.grad is not None
    radial_before = (model.A.grad * model.A).sum(dim=1)
    assert radial_before.abs().max() > 1e-4                    # there was something to remove
    tangent_expected = model.A.grad - radial_before.unsqueeze(1) * model.A
    scale = model.A.grad.norm(dim=1)
    model.project_grad_()
    radial_after = (model.A.grad * model.A).sum(dim=1)
    assert (radial_after.abs() <= 1e-5 * scale).all()
    torch.testing.assert_close(model.A.grad, tangent_expected)


def test_project_grad_without_a_gradient_is_a_no_op(generator: torch.Generator) -> None:
    model = ELSA(3, 2, generator)
    model.project_grad_()
    assert model.A.grad is None


def test_forward_is_relu_of_x_a_at_minus_x() -> None:
    model = ELSA(3, 2)
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    with torch.no_grad():
        model.A.copy_(a)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    # x A A^T by hand: row 0 -> A[0] . A^T = [1, .6, 0]; row 1 -> (A[1]+A[2]) A^T
    # = [.6, 0.6*.6 + 1.8*.8, 1.8] = [.6, 1.8, 1.8]
    expected = torch.relu(torch.tensor([[1.0, 0.6, 0.0], [0.6, 1.8, 1.8]]) - x)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(x), torch.relu(x @ a @ a.T - x))
    assert (model(-x) >= 0).all()


def test_sparse_and_dense_encode_agree(generator: torch.Generator) -> None:
    model = ELSA(50, 7, generator)
    x = (torch.rand(6, 50, generator=generator) < 0.2).float()
    torch.testing.assert_close(model.encode(x.to_sparse()), model.encode(x))
    assert model.encode(x).shape == (6, 7)
    assert model.decode(model.encode(x)).shape == (6, 50)


def test_same_generator_seed_same_weights() -> None:
    a = ELSA(20, 4, torch.Generator().manual_seed(3)).A
    b = ELSA(20, 4, torch.Generator().manual_seed(3)).A
    c = ELSA(20, 4, torch.Generator().manual_seed(4)).A
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("n_items", "d"), [(0, 4), (4, 0)])
def test_rejects_empty_shapes(n_items: int, d: int) -> None:
    with pytest.raises(ValueError, match="ELSA"):
        ELSA(n_items, d)


def test_recommender_without_sae_is_elsa(generator: torch.Generator) -> None:
    model = ELSA(25, 5, generator)
    x = (torch.rand(4, 25, generator=generator) < 0.3).float()
    rec = Recommender(model)
    torch.testing.assert_close(rec(x), model(x))
    torch.testing.assert_close(rec.embed(x), model.encode(x))
