"""MultVAE (method.md §3): shapes, and a deterministic eval mode."""

from __future__ import annotations

import pytest
import torch

from models.multvae import MultVAE, normalize_rows, sparse_dropout
from models.recommender import Recommender


@pytest.fixture
def vae() -> MultVAE:
    torch.manual_seed(0)  # nn.Linear init draws from the global rng
    return MultVAE(40, 6)


def history(generator: torch.Generator, batch: int = 5) -> torch.Tensor:
    return (torch.rand(batch, 40, generator=generator) < 0.3).float()


def test_shapes(vae: MultVAE, generator: torch.Generator) -> None:
    x = history(generator)
    out = vae(x, generator=generator)
    assert out.logits.shape == (5, 40)
    assert out.mu.shape == out.logvar.shape == (5, 6)
    assert vae.encode(x).shape == (5, 6)
    assert vae.decode(vae.encode(x)).shape == (5, 40)
    assert vae.enc_hidden.out_features == 18                   # hidden = 3 d


def test_eval_mode_is_deterministic_and_uses_mu(vae: MultVAE,
                                                generator: torch.Generator) -> None:
    x = history(generator)
    vae.eval()
    a, b = vae(x), vae(x)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(vae.encode(x), vae.encode(x))
    torch.testing.assert_close(a.logits, vae.decode(a.mu))
    torch.testing.assert_close(Recommender(vae)(x), vae.decode(vae.encode(x)))


def test_training_mode_samples(vae: MultVAE, generator: torch.Generator) -> None:
    x = history(generator)
    vae.train()
    a, b = vae(x, generator=generator), vae(x, generator=generator)
    assert not torch.equal(a.logits, b.logits)


def test_input_scale_does_not_matter_in_eval(vae: MultVAE,
                                             generator: torch.Generator) -> None:
    x = history(generator)
    vae.eval()
    torch.testing.assert_close(vae.encode(x), vae.encode(3.0 * x))


def test_rejects_empty_shapes() -> None:
    with pytest.raises(ValueError, match="MultVAE"):
        MultVAE(0, 4)


def test_sparse_input_encodes_as_the_dense_history(vae: MultVAE,
                                                   generator: torch.Generator) -> None:
    x = history(generator, batch=7)
    x[3] = 0.0                                                  # an empty history too
    vae.eval()
    torch.testing.assert_close(vae.encode(x.to_sparse()), vae.encode(x))
    torch.testing.assert_close(vae.encode((2.0 * x).to_sparse()), vae.encode(x))


def test_sparse_training_input_drops_stored_entries_only(vae: MultVAE,
                                                         generator: torch.Generator) -> None:
    """In training mode a sparse batch is dropped out entry by entry: about half of the
    history survives, scaled by 2, and the same seed gives the same draw."""
    x = history(generator, batch=50).to_sparse()
    torch.manual_seed(1)
    dropped = sparse_dropout(normalize_rows(x), 0.5)
    kept = dropped.values() != 0
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(dropped.values()[kept], 2 * normalize_rows(x).values()[kept])
    torch.manual_seed(1)
    assert torch.equal(sparse_dropout(normalize_rows(x), 0.5).values(), dropped.values())
    vae.train()
    torch.manual_seed(2)
    a = vae(x, generator=generator)
    assert a.logits.shape == (50, 40)
    a.logits.sum().backward()
    assert vae.enc_hidden.weight.grad is not None
    assert vae.enc_hidden.weight.grad.shape == (40, 18)


def test_rejects_a_dropout_of_one() -> None:
    with pytest.raises(ValueError, match="dropout"):
        MultVAE(40, 6, dropout=1.0)
