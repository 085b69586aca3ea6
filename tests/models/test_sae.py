"""Sparse autoencoders (method.md §4): out-of-place standardisation (§9), TopK sparsity,
unit decoder rows, the input's scale restored, and the nested recommender."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from models.config import REFINE_SOLVERS
from models.elsa import ELSA
from models.recommender import Recommender
from models.sae import BasicSAE, SAEOutput, SparseAutoencoder, TopKSAE, standardize


def generic(generator: torch.Generator, batch: int = 8, d: int = 16) -> torch.Tensor:
    """Embeddings with a non-zero mean and a large scale, like ELSA's."""
    return 3.0 + 5.0 * torch.randn(batch, d, generator=generator)


def test_standardize_does_not_modify_its_input(generator: torch.Generator) -> None:
    u = generic(generator)
    before = u.clone()
    s = standardize(u)
    assert torch.equal(u, before)
    torch.testing.assert_close(s.u_std.mean(dim=-1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.u_std.std(dim=-1), torch.ones(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.mean, u.mean(dim=-1, keepdim=True))
    torch.testing.assert_close(s.std, u.std(dim=-1, keepdim=True))


@pytest.mark.parametrize("kind", ["topk", "basic"])
def test_sae_forward_and_encode_leave_the_input_alone(kind: str,
                                                      generator: torch.Generator) -> None:
    sae = TopKSAE(16, 64, 8, generator) if kind == "topk" else BasicSAE(16, 64, generator)
    u = 50.0 + 5.0 * torch.randn(8, 16, generator=generator)
    before = u.clone()
    with torch.no_grad():
        out = sae(u)
        sae.encode(u)
    assert torch.equal(u, before)
    # the reconstruction is in the input's scale (mean ~50), not the standardised one (~0)
    assert out.reconstruction.mean().item() == pytest.approx(u.mean().item(), abs=10.0)


def test_topk_code_has_exactly_k_nonnegative_entries(generator: torch.Generator) -> None:
    sae = TopKSAE(16, 64, 8, generator)
    u = generic(generator, batch=32)
    pre = sae.pre_activation(standardize(u).u_std)
    assert ((pre > 0).sum(dim=-1) > 8).all()                   # generic: > k candidates
    code = sae.encode(u).code
    assert code.shape == (32, 64)
    assert ((code != 0).sum(dim=-1) == 8).all()
    assert (code >= 0).all()
    # the k kept are the k largest pre-activations
    kept = torch.where(code > 0, pre, torch.zeros_like(pre))
    torch.testing.assert_close(kept.sum(dim=-1), pre.topk(8, dim=-1).values.sum(dim=-1))


def test_basic_sae_keeps_every_positive_pre_activation(generator: torch.Generator) -> None:
    sae = BasicSAE(16, 64, generator)
    u = generic(generator, batch=32)
    pre = sae.pre_activation(standardize(u).u_std)
    code = sae.encode(u).code
    assert torch.equal(code, pre)
    assert ((code > 0).sum(dim=-1) > 16).all()
    assert (code >= 0).all()


def test_decoder_rows_are_unit_norm(generator: torch.Generator) -> None:
    sae = TopKSAE(16, 48, 4, generator)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 9.0, 48).unsqueeze(1))
    sae.normalize_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))


def test_init_directions_start_latents_at_vectors(generator: torch.Generator) -> None:
    """Each chosen latent's decoder row starts at its vector's direction (standardised,
    less b_dec) and its encoder column as that row; the other rows stay as they were."""
    sae = TopKSAE(16, 48, 4, generator)
    u = generic(generator, batch=5)
    sae.init_decoder_bias_(generic(generator, batch=30))
    before = sae.W_dec.detach().clone()
    rows = torch.tensor([40, 3, 17, 0, 22])
    sae.init_directions_(rows, u)
    want = standardize(u).u_std - sae.b_dec.detach()
    torch.testing.assert_close(sae.W_dec[rows], want / want.norm(dim=1, keepdim=True))
    others = torch.ones(48, dtype=torch.bool)
    others[rows] = False
    torch.testing.assert_close(sae.W_dec[others], before[others])
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    # each such latent is then most active, among the vectors, for its own one
    pre = sae.pre_activation(standardize(u).u_std)[:, rows]
    assert torch.equal(pre.argmax(dim=0), torch.arange(5))
    with pytest.raises(ValueError, match="need 5 vectors of width 16"):
        sae.init_directions_(rows, u[:4])


def test_project_grad_makes_decoder_gradient_tangent(generator: torch.Generator) -> None:
    sae = TopKSAE(16, 48, 4, generator)
    out = sae(generic(generator))
    out.reconstruction.pow(2).sum().backward()
    assert sae.W_dec.grad is not None
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() > 1e-4
    scale = sae.W_dec.grad.norm(dim=1)
    sae.project_grad_()
    radial_after = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    assert (radial_after.abs() <= 1e-5 * scale).all()


def identity_sae(sae: BasicSAE | TopKSAE) -> None:
    """W_dec = [I; -I] (unit rows), W_enc = [I, -I]: e W_dec = ReLU(u~) - ReLU(-u~) = u~."""
    d = sae.d
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.b_enc.zero_()
        sae.b_dec.zero_()


@pytest.mark.parametrize("kind", ["topk", "basic"])
def test_decode_of_encode_returns_to_the_input_scale(kind: str,
                                                     generator: torch.Generator) -> None:
    d = 12
    sae = TopKSAE(d, 2 * d, d) if kind == "topk" else BasicSAE(d, 2 * d)
    identity_sae(sae)
    u = 100.0 + 40.0 * torch.randn(5, d, generator=generator)
    code, mean, std = sae.encode(u)
    torch.testing.assert_close(sae.decode(code, mean, std), u, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(sae(u).reconstruction, u, rtol=1e-5, atol=1e-3)
    # an empty code decodes to the vector's mean (plus the bias, here zero)
    torch.testing.assert_close(sae.decode(torch.zeros_like(code), mean, std),
                               mean.expand(5, d))


def test_rejects_bad_k_and_shapes() -> None:
    with pytest.raises(ValueError, match="k=0"):
        TopKSAE(4, 8, 0)
    with pytest.raises(ValueError, match="k=9"):
        TopKSAE(4, 8, 9)
    with pytest.raises(ValueError, match="SAE"):
        BasicSAE(0, 8)


def test_nested_recommender_is_relu_of_reconstruction_decoded_minus_x(
        generator: torch.Generator) -> None:
    elsa = ELSA(30, 8, generator)
    sae = TopKSAE(8, 32, 4, generator)
    x = (torch.rand(5, 30, generator=generator) < 0.3).float()
    u_hat = sae(elsa.encode(x)).reconstruction
    torch.testing.assert_close(Recommender(elsa, sae)(x), torch.relu(u_hat @ elsa.A.T - x))


SOLVERS = pytest.mark.parametrize("solver", REFINE_SOLVERS)


@SOLVERS
def test_refit_keeps_the_support_and_never_fits_worse(generator: torch.Generator,
                                                      solver: str) -> None:
    """Eval mode refits the k chosen values by NNLS: same latents, values >= 0, and a
    standardised reconstruction error no larger than the encoder's own."""
    sae = TopKSAE(16, 64, 8, generator, refine_steps=50, refine_solver=solver)
    u = generic(generator, batch=32)
    s = standardize(u)
    with torch.no_grad():
        plain = sae.train().encode(u).code
        refit = sae.eval().encode(u).code

        def error(code: torch.Tensor) -> torch.Tensor:
            return (s.u_std - sae.b_dec - code @ sae.W_dec).pow(2).sum(dim=-1)

    assert not torch.equal(plain, refit)
    assert (refit >= 0).all() and ((refit != 0).sum(dim=-1) <= 8).all()
    assert ((refit != 0) & (plain == 0)).sum() == 0             # no latent outside the top k
    assert (error(refit) <= error(plain) + 1e-4).all()
    assert error(refit).mean() < 0.9 * error(plain).mean()


@SOLVERS
def test_refit_recovers_a_code_on_its_support(generator: torch.Generator,
                                              solver: str) -> None:
    """A vector that is exactly a non-negative mix of decoder rows is reconstructed
    exactly, although the encoder's values are ten times too small."""
    sae = TopKSAE(16, 32, 6, generator, refine_steps=300, refine_solver=solver)
    with torch.no_grad():
        pairs = torch.zeros(8, 16)                  # orthonormal rows with zero mean
        for n in range(8):
            pairs[n, 2 * n], pairs[n, 2 * n + 1] = 1.0, -1.0
        sae.W_dec[:8] = pairs
        sae.normalize_()
        sae.W_enc.copy_(0.1 * sae.W_dec.T)          # right support, wrong values
        sae.W_enc[:, 8:] *= 0.01
        sae.b_dec.zero_()
        v = torch.tensor([[3.0, 1.0, 2.0, 0.5]]) @ sae.W_dec[[1, 3, 4, 6]]
        v = v / v.std()                             # mean 0 already: standardised
        plain = sae.train()(v).reconstruction
        out = sae.eval()(v)
    assert not torch.allclose(plain, v, atol=1e-2)
    torch.testing.assert_close(out.reconstruction, v, atol=1e-4, rtol=0)
    assert set(out.code.nonzero()[:, 1].tolist()) == {1, 3, 4, 6}


def nnls_problem(generator: torch.Generator, batch: int = 16, m: int = 24
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ill-conditioned NNLS problems like the refit's (Gram matrices of correlated unit
    rows): gram [batch, m, m], rhs and a poor start [batch, m]."""
    base = torch.randn(batch, 1, 32, generator=generator)
    rows = base + 0.5 * torch.randn(batch, m, 32, generator=generator)
    rows = rows / rows.norm(dim=-1, keepdim=True)
    used = torch.rand(batch, m, generator=generator) < 0.5
    truth = torch.rand(batch, m, generator=generator) * used
    noise = 0.05 * torch.randn(batch, 32, generator=generator)
    target = (truth.unsqueeze(1) @ rows).squeeze(1) + noise
    gram = rows @ rows.transpose(1, 2)
    rhs = (rows @ target.unsqueeze(-1)).squeeze(-1)
    return gram, rhs, torch.rand(batch, m, generator=generator)


def nnls_objective(gram: torch.Tensor, rhs: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """0.5 e G e - rhs . e per problem (the refit's objective up to a constant)."""
    return 0.5 * (e * (gram @ e.unsqueeze(-1)).squeeze(-1)).sum(-1) - (e * rhs).sum(-1)


def test_accelerated_refit_solves_the_same_least_squares_in_fewer_steps(
        generator: torch.Generator) -> None:
    """Both solvers reach the same optimum (the KKT conditions hold: the gradient is zero
    on the support and non-negative off it); in 50 steps the accelerated one is far
    closer to it than plain projected-gradient steps, on every problem."""
    gram, rhs, start = nnls_problem(generator)
    assert torch.linalg.cond(gram).median() > 1000     # ml-latest-small's: ~1,200

    def solve(solver: str, steps: int) -> torch.Tensor:
        sae = TopKSAE(4, 8, 2, refine_steps=steps, refine_solver=solver)
        return sae.refit(gram, rhs, start)

    exact = solve("accelerated", 5000)
    grad = (gram @ exact.unsqueeze(-1)).squeeze(-1) - rhs
    assert (exact >= 0).all()
    assert grad[exact > 0].abs().max() < 1e-4 and grad[exact == 0].min() > -1e-4
    torch.testing.assert_close(solve("projected-gradient", 50_000), exact, atol=2e-3, rtol=0)
    best = nnls_objective(gram, rhs, exact)
    gap_plain = nnls_objective(gram, rhs, solve("projected-gradient", 50)) - best
    gap_fast = nnls_objective(gram, rhs, solve("accelerated", 50)) - best
    assert (gap_fast <= gap_plain + 1e-6).all()
    assert gap_fast.mean() < 0.1 * gap_plain.mean()


def test_refit_solver_must_be_known() -> None:
    with pytest.raises(ValueError, match="refine_solver"):
        TopKSAE(4, 8, 2, refine_steps=5, refine_solver="newton")


def test_candidates_find_latents_the_encoder_ranked_below_k(
        generator: torch.Generator) -> None:
    """The encoder ranks one needed latent below its top k but within its candidates:
    only the candidate search recovers the vector exactly."""
    sae = TopKSAE(16, 32, 4, generator, refine_steps=300, refine_candidates=12)
    with torch.no_grad():
        pairs = torch.zeros(8, 16)
        for n in range(8):
            pairs[n, 2 * n], pairs[n, 2 * n + 1] = 1.0, -1.0
        sae.W_dec[:8] = pairs
        sae.normalize_()
        sae.W_enc.copy_(sae.W_dec.T)                               # rows 8-15: distractors
        sae.W_enc[:, 16:] *= 0.01
        sae.W_enc[:, 3] *= 0.05                                    # needed, ranked low
        sae.b_dec.zero_()
        v = torch.tensor([[3.0, 1.0, 2.0, 1.5]]) @ sae.W_dec[[0, 3, 5, 6]]
        v = v / v.std()
        assert 3 not in sae.pre_activation(v).topk(4).indices.tolist()[0]
        alone = TopKSAE(16, 32, 4, refine_steps=300)
        alone.load_state_dict(sae.state_dict())
        out, out_alone = sae.eval()(v), alone.eval()(v)
    torch.testing.assert_close(out.reconstruction, v, atol=1e-4, rtol=0)
    assert set(out.code.nonzero()[:, 1].tolist()) == {0, 3, 5, 6}
    assert (out_alone.reconstruction - v).norm() > 0.1


def test_refit_metric_measures_the_residual(generator: torch.Generator) -> None:
    """With a metric M the refit minimises r M r^T on the same support: it fits better
    than the plain refit in M and worse plainly; the identity metric is the plain refit."""
    sae = TopKSAE(16, 64, 8, generator, refine_steps=400)
    u = generic(generator, batch=32)
    s = standardize(u)
    weights = torch.ones(16)
    weights[:4] = 50.0                                   # four directions matter most
    metric = torch.diag(weights)
    with torch.no_grad():
        sae.eval()
        plain = sae.encode(u).code
        sae.set_refine_metric(torch.eye(16))
        same = sae.encode(u).code
        sae.set_refine_metric(metric)
        weighted = sae.encode(u).code

        def error(code: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            r = s.u_std - sae.b_dec - code @ sae.W_dec
            return ((r @ m) * r).sum(dim=-1)

    torch.testing.assert_close(same, plain, atol=1e-4, rtol=1e-4)
    chosen = sae.train().encode(u).code != 0                       # the encoder's top k
    assert ((weighted != 0) & ~chosen).sum() == 0 and ((plain != 0) & ~chosen).sum() == 0
    assert (error(weighted, metric) <= error(plain, metric) + 1e-3).all()
    assert error(weighted, metric).mean() < 0.9 * error(plain, metric).mean()
    assert error(weighted, torch.eye(16)).mean() > error(plain, torch.eye(16)).mean()


def test_refit_metric_follows_the_decoder_and_is_checked(generator: torch.Generator) -> None:
    sae = TopKSAE(8, 16, 2, generator, refine_steps=5)
    assert sae.weighted_decoder() is sae.W_dec and "refine_metric" not in sae.state_dict()
    root = torch.randn(8, 8, generator=generator)
    sae.set_refine_metric(root @ root.T)
    torch.testing.assert_close(sae.weighted_decoder(), sae.W_dec @ (root @ root.T))
    with torch.no_grad():
        sae.W_dec.mul_(2.0)                               # an optimiser step, in place
    torch.testing.assert_close(sae.weighted_decoder(), sae.W_dec @ (root @ root.T))
    assert torch.equal(sae.state_dict()["refine_metric"], root @ root.T)
    with pytest.raises(ValueError, match=r"\[8, 8\]"):
        sae.set_refine_metric(torch.eye(7))
    with pytest.raises(ValueError, match="symmetric"):
        sae.set_refine_metric(torch.triu(torch.ones(8, 8)))
    with pytest.raises(ValueError, match="finite"):
        sae.set_refine_metric(torch.full((8, 8), float("nan")))
    with pytest.raises(ValueError, match="positive semi-definite"):
        sae.set_refine_metric(torch.diag(torch.tensor([1.0] * 7 + [-0.5])))
    # a copy of the weights or a change of dtype rebuilds the cached product
    other = TopKSAE(8, 16, 2, torch.Generator().manual_seed(7), refine_steps=5)
    other.set_refine_metric(torch.eye(8))
    other.weighted_decoder()
    other.load_state_dict(sae.state_dict())
    torch.testing.assert_close(other.weighted_decoder(), sae.W_dec @ (root @ root.T))
    wide = other.double()
    assert wide.weighted_decoder().dtype == torch.float64
    torch.testing.assert_close(wide.weighted_decoder(),
                               sae.W_dec.double() @ (root @ root.T).double())
    sae.set_refine_metric(None)
    assert sae.refine_metric is None and "refine_metric" not in sae.state_dict()


@pytest.mark.parametrize(("steps", "candidates"), [(-1, 0), (1, 1), (1, 9)])
def test_refine_settings_are_checked(steps: int, candidates: int) -> None:
    with pytest.raises(ValueError, match="refine_"):
        TopKSAE(4, 8, 2, refine_steps=steps, refine_candidates=candidates)


@pytest.mark.parametrize("refine", [0, 5])
def test_topk_training_pass_is_the_dense_pass_on_k_latents(generator: torch.Generator,
                                                           refine: int) -> None:
    """The training forward computes only the chosen latents; it is the same function as
    the dense pass (encode -> k largest -> decode), with the same gradients."""
    sae = TopKSAE(12, 64, 5, generator, refine_steps=refine,
                  refine_candidates=8 if refine else 0)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=generator)   # b_enc and b_dec take part too
        sae.b_dec.normal_(0, 0.1, generator=generator)
    sae.train()
    u = torch.randn(9, 12, generator=generator)
    u[0, :] = -5.0                     # a row with fewer than k positive pre-activations

    def run(forward: Callable[[torch.Tensor], SAEOutput]) -> tuple[SAEOutput, list[torch.Tensor]]:
        sae.zero_grad()
        out = forward(u)
        loss = (out.reconstruction - u).pow(2).sum() + out.code.sum()
        loss.backward()
        return out, [p.grad.clone() for p in sae.parameters() if p.grad is not None]

    fast, fast_grads = run(sae)
    dense, dense_grads = run(lambda x: SparseAutoencoder.forward(sae, x))
    torch.testing.assert_close(fast.reconstruction, dense.reconstruction)
    torch.testing.assert_close(fast.code, dense.code)
    assert len(fast_grads) == len(dense_grads) == 4
    for a, b in zip(fast_grads, dense_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert ((fast.code > 0).sum(dim=-1) <= 5).all()
