"""Sparse autoencoders over a backbone's user embedding (method.md §4).

u~ = (u - mean(u)) / (std(u) + 1e-7)      standardisation, out of place (§4, §9)
e  = ReLU((u~ - b_dec) W_enc + b_enc)       then TopK keeps the k largest (Basic keeps all)
u^ = mean(u) + std(u) (e W_dec + b_dec)     decoder rows W_dec[n] of unit norm
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.config import REFINE_SOLVERS, RefineSolver

EPS = 1e-7


class Standardized(NamedTuple):
    """u_std: [batch, d]; mean, std: [batch, 1] — what the decoder needs to undo it."""

    u_std: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class SAECode(NamedTuple):
    """code: [batch, h] non-negative and sparse; mean, std: [batch, 1] of the input vector,
    kept so that the decoder (and steering, §6-§7) can return to the input's scale."""

    code: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class SAEOutput(NamedTuple):
    """reconstruction: [batch, d] in the input's scale; code: [batch, h] (non-negative,
    sparse); mean, std: [batch, 1] the per-vector statistics used to standardise."""

    reconstruction: torch.Tensor
    code: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def standardize(u: torch.Tensor) -> Standardized:
    """Per-vector standardisation, returning a new tensor; `u` is never modified (§4)."""
    mean = u.mean(dim=-1, keepdim=True)
    std = u.std(dim=-1, keepdim=True)
    return Standardized((u - mean) / (std + EPS), mean, std)


class SparseAutoencoder(nn.Module):
    """Untied SAE. W_enc: [d, h], b_enc: [h], W_dec: [h, d] (unit rows), b_dec: [d].

    Subclasses decide which pre-activations survive (`sparsify`).
    """

    def __init__(self, d: int, h: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if d < 1 or h < 1:
            raise ValueError(f"SAE needs d >= 1 and h >= 1, got {d}, {h}")
        w_dec = torch.empty(h, d)
        nn.init.kaiming_uniform_(w_dec, a=5**0.5, generator=generator)
        self.W_dec = nn.Parameter(w_dec)
        self.normalize_()
        # Encoder initialised as the decoder's transpose: a common, stable start.
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())
        self.b_enc = nn.Parameter(torch.zeros(h))
        self.b_dec = nn.Parameter(torch.zeros(d))

    @property
    def d(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def h(self) -> int:
        return int(self.W_dec.shape[0])

    def pre_activation(self, u_std: torch.Tensor) -> torch.Tensor:
        """ReLU((u~ - b_dec) W_enc + b_enc): [batch, h]."""
        return torch.relu((u_std - self.b_dec) @ self.W_enc + self.b_enc)

    def sparsify(self, pre: torch.Tensor) -> torch.Tensor:
        """Which activations are kept; the Basic SAE keeps all of them."""
        return pre

    def encode(self, u: torch.Tensor) -> SAECode:
        """u: [batch, d] -> SAECode(code [batch, h], mean [batch, 1], std [batch, 1])."""
        s = standardize(u)
        return SAECode(self.sparsify(self.pre_activation(s.u_std)), s.mean, s.std)

    def decode(self, code: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """code: [batch, h], mean/std: [batch, 1] -> u^: [batch, d]."""
        return mean + std * (code @ self.W_dec + self.b_dec)

    def forward(self, u: torch.Tensor) -> SAEOutput:
        code, mean, std = self.encode(u)
        return SAEOutput(self.decode(code, mean, std), code, mean, std)

    @torch.no_grad()
    def init_decoder_bias_(self, u: torch.Tensor) -> None:
        """Start b_dec at the mean of the standardised training vectors, so the code
        spends its k latents on what sets a vector apart, not on what all share
        (a common SAE initialisation; the paper does not say how it initialised b_dec)."""
        self.b_dec.copy_(standardize(u).u_std.mean(dim=0))

    @torch.no_grad()
    def init_directions_(self, rows: torch.Tensor, u: torch.Tensor) -> None:
        """Initialisation only: start decoder row `rows[i]` at the direction of training
        vector u[i], standardised and less b_dec (set b_dec first), and reset the whole
        encoder to the decoder's transpose: each such latent starts as the similarity to
        one vector."""
        if u.shape[0] != len(rows) or u.shape[1] != self.d:
            raise ValueError(f"need {len(rows)} vectors of width {self.d}, got {tuple(u.shape)}")
        self.W_dec[rows] = standardize(u).u_std - self.b_dec
        self.normalize_()
        self.W_enc.copy_(self.W_dec.T)

    @torch.no_grad()
    def normalize_(self) -> None:
        """Unit-norm decoder rows (§4), as ELSA's rows."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_grad_(self) -> None:
        """Remove the radial component of each decoder row's gradient (§4)."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(dim=1, keepdim=True) * self.W_dec)


class _ChosenLatents(torch.autograd.Function):
    """ReLU(centered W_enc[:, j] + b_enc[j]) for each vector's chosen latents j, read off
    the dense pre-activations `pre` (already computed to choose them), with the gradient
    that product has: only the chosen columns of W_enc and entries of b_enc receive one,
    computed as a sparse [h, batch] x [batch, d] product (no [batch, k, d] temporary)."""

    @staticmethod
    def forward(ctx: Any, centered: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor,
                pre: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """centered: [batch, d] (u~ - b_dec); w_enc: [d, h]; b_enc: [h];
        pre: [batch, h] after the ReLU; indices: [batch, k] -> values [batch, k]."""
        values = pre.gather(-1, indices)
        ctx.save_for_backward(centered, w_enc, indices, values)
        return values

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        centered, w_enc, indices, values = ctx.saved_tensors
        grad = grad * (values > 0)                                       # the ReLU
        batch, k = indices.shape
        flat, flat_grad = indices.reshape(-1), grad.reshape(-1)
        g_centered = g_w = g_b = None
        rows = torch.arange(batch, device=grad.device).repeat_interleave(k)
        if ctx.needs_input_grad[0]:          # sum_j grad_j W_enc[:, j]
            by_vector = torch.sparse_coo_tensor(torch.stack([rows, flat]), flat_grad,
                                                (batch, w_enc.shape[1]),
                                                check_invariants=False).coalesce()
            g_centered = torch.sparse.mm(by_vector, w_enc.T)
        if ctx.needs_input_grad[1]:          # column j: sum over vectors of grad_j centered
            by_latent = torch.sparse_coo_tensor(torch.stack([flat, rows]), flat_grad,
                                                (w_enc.shape[1], batch),
                                                check_invariants=False).coalesce()
            g_w = torch.sparse.mm(by_latent, centered).T
        if ctx.needs_input_grad[2]:
            g_b = grad.new_zeros(w_enc.shape[1]).index_add_(0, flat, flat_grad)
        return g_centered, g_w, g_b, None, None


class TopKSAE(SparseAutoencoder):
    """Keeps the k largest pre-activations of each vector, zeroes the rest (§4).

    Knobs: with `refine_steps` > 0, an SAE in eval mode chooses its k latents and their
    values by non-negative least squares over the encoder's candidates (see `encode`,
    `refit`); in training mode the code is the plain encoder's, so training is the
    paper's. Either way the code is k-sparse and non-negative.

    Knobs: the least squares measure the residual r = (u~ - b_dec) - e W_dec[S] as
    r M r^T with `refine_metric` M [d, d] (symmetric positive semi-definite) when one is
    set (`set_refine_metric`), plainly (M = I) when not. For ELSA, M = A^T diag(w) A makes
    it the weighted error of the item scores r A^T, which is what the ranking reads
    (models.train.score_metric).
    """

    def __init__(self, d: int, h: int, k: int, generator: torch.Generator | None = None,
                 refine_steps: int = 0, refine_candidates: int = 0,
                 refine_solver: RefineSolver = "projected-gradient") -> None:
        if not 1 <= k <= h:
            raise ValueError(f"TopK needs 1 <= k <= h, got k={k}, h={h}")
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        if refine_candidates and not k <= refine_candidates <= h:
            raise ValueError(f"refine_candidates must be 0 or between k={k} and h={h}, "
                             f"got {refine_candidates}")
        if refine_solver not in REFINE_SOLVERS:
            raise ValueError(f"refine_solver must be one of {', '.join(REFINE_SOLVERS)}, got "
                             f"{refine_solver!r}")
        super().__init__(d, h, generator)
        self.k = k
        self.refine_steps = refine_steps
        self.refine_candidates = refine_candidates
        self.refine_solver = refine_solver
        self.refine_metric: torch.Tensor | None
        self.register_buffer("refine_metric", None)
        self._metric_rows: tuple[tuple[Any, ...], torch.Tensor] | None = None

    def set_refine_metric(self, metric: torch.Tensor | None) -> None:
        """Measure the refit's residual with `metric` [d, d] (symmetric, positive
        semi-definite, finite), or plainly with None. The metric is a buffer: it is saved
        with the weights."""
        if metric is not None:
            if metric.shape != (self.d, self.d):
                raise ValueError(f"refine metric must be [{self.d}, {self.d}], got "
                                 f"{list(metric.shape)}")
            if not bool(torch.isfinite(metric).all()) or not torch.allclose(
                    metric, metric.T, rtol=1e-4, atol=1e-6 * float(metric.abs().max())):
                raise ValueError("refine metric must be finite and symmetric")
            scale = max(float(metric.abs().max()), EPS)
            if float(torch.linalg.eigvalsh(metric.double())[0]) < -1e-6 * scale:
                raise ValueError("refine metric must be positive semi-definite (it has a "
                                 "negative eigenvalue)")
            metric = metric.detach().to(self.W_dec.device, self.W_dec.dtype).clone()
        self.refine_metric = metric
        self._metric_rows = None

    def weighted_decoder(self) -> torch.Tensor:
        """W_dec M [h, d] (W_dec without a metric), cached while neither changes: the key
        holds both tensors' storage and in-place version; moving the module (`_apply`)
        drops the cache."""
        if self.refine_metric is None:
            return self.W_dec
        w, m = self.W_dec, self.refine_metric
        key = (w.data_ptr(), w._version, m.data_ptr(), m._version)
        cached = self._metric_rows                   # read once: requests share the module
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, w @ m)
            self._metric_rows = cached
        return cached[1]

    def _apply(self, fn: Any, recurse: bool = True) -> TopKSAE:
        self._metric_rows = None                     # .to(), .half(), ...: rebuild the cache
        return super()._apply(fn, recurse)

    def sparsify(self, pre: torch.Tensor) -> torch.Tensor:
        values, indices = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values)

    def forward(self, u: torch.Tensor) -> SAEOutput:
        """Eval mode: `encode` (refit included), then `decode`. Training mode: the same
        function as `SparseAutoencoder.forward` with the same gradients, computed on the
        chosen latents only: the dense pre-activations pick each vector's k latents and
        give their values outside the autograd graph (`_ChosenLatents` supplies the
        gradient), and the reconstruction touches only those k rows of W_dec."""
        if not self.training:
            return super().forward(u)
        s = standardize(u)
        centered = s.u_std - self.b_dec
        with torch.no_grad():
            pre = self.pre_activation(s.u_std)
            indices = pre.topk(self.k, dim=-1).indices
        values = _ChosenLatents.apply(centered, self.W_enc, self.b_enc, pre, indices)
        decoded = F.embedding_bag(indices, self.W_dec, per_sample_weights=values, mode="sum")
        code = torch.zeros(u.shape[0], self.h, dtype=values.dtype,
                           device=values.device).scatter(-1, indices, values)
        return SAEOutput(s.mean + s.std * (decoded + self.b_dec), code, s.mean, s.std)

    def encode(self, u: torch.Tensor) -> SAECode:
        """u: [batch, d] -> SAECode with at most k non-zero (positive) latents per row.

        Training mode, or `refine_steps` = 0: the encoder's k largest pre-activations (§4).
        Eval mode with `refine_steps` > 0 (Knobs): the encoder proposes its
        max(k, `refine_candidates`) largest latents, their values are fitted by
        non-negative least squares (`refit`), the k largest fits are kept and refitted.
        """
        if self.refine_steps == 0 or self.training:
            return super().encode(u)
        s = standardize(u)
        pre = self.pre_activation(s.u_std)
        values, indices = pre.topk(max(self.k, self.refine_candidates), dim=-1)
        rows = self.W_dec[indices]                                    # [batch, m, d]
        weighted = rows if self.refine_metric is None else self.weighted_decoder()[indices]
        gram = weighted @ rows.transpose(1, 2)                        # [batch, m, m]
        rhs = (weighted @ (s.u_std - self.b_dec).unsqueeze(-1)).squeeze(-1)  # [batch, m]
        values = self.refit(gram, rhs, values)
        if indices.shape[-1] > self.k:
            # keep the k largest fits and refit on the sub-problem: its Gram matrix and
            # right-hand side are slices of the candidates' (no second gather of rows)
            values, keep = values.topk(self.k, dim=-1)
            indices = indices.gather(-1, keep)
            gram = gram.gather(1, keep.unsqueeze(-1).expand(-1, -1, gram.shape[-1]))
            gram = gram.gather(2, keep.unsqueeze(1).expand(-1, self.k, -1))
            values = self.refit(gram, rhs.gather(-1, keep), values)
        return SAECode(torch.zeros_like(pre).scatter(-1, indices, values), s.mean, s.std)

    @torch.no_grad()
    def refit(self, gram: torch.Tensor, rhs: torch.Tensor,
              values: torch.Tensor) -> torch.Tensor:
        """Knobs: the non-negative least-squares values of the chosen latents S,
        argmin_{e >= 0} ||(u~ - b_dec) - e W_dec[S]||_M^2, given the support's Gram matrix
        `gram` = W_dec[S] M W_dec[S]^T and `rhs` = W_dec[S] M (u~ - b_dec) (M the
        `refine_metric`, the identity without one), by `refine_steps` steps of size 1/L
        (L the largest eigenvalue of `gram`) started from the encoder's `values`.

        `refine_solver` "projected-gradient": plain projected-gradient steps.
        "accelerated": the same steps taken from an extrapolated point (FISTA, Beck and
        Teboulle 2009). Same cost per step; the Gram matrices of 64 candidates are
        ill-conditioned (median condition number ~1,200 on ml-latest-small), where plain
        steps converge slowly (README, "The refit's solver"). An adaptive restart of the
        momentum changed nothing measurable there, and is left out.

        A one-layer encoder is a fair judge of *which* latents a vector may need but a poor
        one of *how much* of each, above all on held-out users it never saw
        (inference-time optimisation of SAE codes; README "Choices for small data").
        gram: [batch, m, m]; rhs, values: [batch, m] -> refit values [batch, m] >= 0.
        """
        step = 1.0 / torch.linalg.eigvalsh(gram)[..., -1:].clamp_min(EPS)
        accelerated = self.refine_solver == "accelerated"
        e = y = values.clamp_min(0)          # y: where the next step starts (e without
        t = 1.0                              # acceleration)
        for _ in range(self.refine_steps):
            grad = (gram @ y.unsqueeze(-1)).squeeze(-1) - rhs
            new = (y - step * grad).clamp_min(0)
            if accelerated:
                t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
                y, t = new + ((t - 1) / t_next) * (new - e), t_next
            else:
                y = new
            e = new
        return e


class BasicSAE(SparseAutoencoder):
    """ReLU SAE; sparsity comes from the L1 penalty alone (§4)."""
