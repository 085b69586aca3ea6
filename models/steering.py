"""Steering a user's sparse code (method.md §6) and scoring it fast (§7). Pure functions.

The paper's formula, for one concept c with neuron set N(c) and s = sum_j z_j (the L1 mass
of the non-negative code z):

    z' = (1 - alpha) z + (alpha s / |N|) sum_{n in N} e_n                       (§6)

Knobs generalises it to several knobs at once and to a "less of" direction. A knob is a
neuron set N_j with a signed strength a_j in [-1, 1]:

1. "Less of" (a_j < 0, b_j = -a_j): every neuron of N_j is scaled by (1 - b_j), so
   b_j = 1 turns it off; neurons in several less-knobs take the product. The code is then
   rescaled to its old mass s, so turning one taste down gives the others its share
   (as the paper's formula keeps s). If nothing is left (the user had only those
   neurons), the code stays empty until a "more of" knob fills it.
2. "More of" (a_j > 0): with A = sum a_j (the strengths of all more-knobs; if A > 1 they
   are divided by A, so the code becomes all concept), z' = (1 - A) z + s sum_j
   (a_j / |N_j|) sum_{n in N_j} e_n: a convex combination of the user's (rescaled) code
   and the knobs' unit-mass codes, scaled by s.

So z' is non-negative, its L1 mass is s (unless step 1 emptied it and no knob pushes), it
has at most (user's active neurons + knob neurons) non-zeros, one knob with a > 0 is the
paper's formula exactly, and all-zero strengths return z bit for bit.

Scoring (§7): after the SAE encoder, ELSA's scores are affine in the code,
    u^ A^T = mean * (1 A^T) + std * (z W_dec A^T + b_dec A^T),
so with the user's z W_dec A^T computed once, each knob's mean row (`knob_row`) and the
rows R[n] = W_dec[n] A^T of the user's active neurons cached, a knob change costs
O((1 + knobs + turned-down active neurons) x items) however many neurons a concept knob
moves (`steered_scores`). `steer_values` applies the rule to the knob neurons alone, in
Python floats; `steer` is the same rule on whole codes (batches, tests, showing a steered
code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from models.elsa import ELSA
from models.sae import SparseAutoencoder


class Knob(NamedTuple):
    """neurons: the knob's neuron set N (one neuron, or a concept's top neurons);
    strength: in [-1, 1], > 0 "more of", < 0 "less of", 0 leaves the code alone."""

    neurons: tuple[int, ...]
    strength: float


class Steered(NamedTuple):
    """code: [h] (or [batch, h]) the steered code z'; keep: the factor every neuron outside
    the knobs' neurons was multiplied by (z' = keep * z off the knob neurons), scalar or
    [batch, 1]."""

    code: torch.Tensor
    keep: torch.Tensor


def _check(knobs: Sequence[Knob], h: int) -> None:
    # on the hot path: builtins (min, max, set) per knob, the message only on failure
    for j, knob in enumerate(knobs):
        if not -1.0 <= knob.strength <= 1.0:
            raise ValueError(f"knob {j}: strength must be in [-1, 1], got {knob.strength}")
        ns = knob.neurons
        if not ns:
            raise ValueError(f"knob {j}: needs at least one neuron")
        if min(ns) < 0 or max(ns) >= h:
            bad = [n for n in ns if not 0 <= n < h]
            raise ValueError(f"knob {j}: neuron(s) {bad} outside 0..{h - 1}")
        if len(ns) > 1 and len(set(ns)) != len(ns):
            raise ValueError(f"knob {j}: neurons {list(ns)} repeat a neuron")


def steer(code: torch.Tensor, knobs: Sequence[Knob]) -> Steered:
    """Apply knobs to one code [h] or a batch [batch, h] (the same knobs for every row);
    see the module docstring for the rule. The input is not modified."""
    h = code.shape[-1]
    _check(knobs, h)
    mass = code.sum(dim=-1, keepdim=True)
    keep = torch.ones_like(mass)
    less = [(n, 1.0 + k.strength) for k in knobs if k.strength < 0 for n in k.neurons]
    more = [(n, k.strength / len(k.neurons)) for k in knobs if k.strength > 0
            for n in k.neurons]
    z = code
    if less:
        idx, factors = zip(*less, strict=True)
        factor = torch.ones(h, dtype=code.dtype, device=code.device).scatter_reduce_(
            0, torch.tensor(idx, device=code.device),
            torch.tensor(factors, dtype=code.dtype, device=code.device), reduce="prod")
        z = code * factor
        left = z.sum(dim=-1, keepdim=True)
        # back to the old mass; an emptied code stays empty (0 / 0 -> 0, not NaN)
        keep = torch.where(left > 0, mass / left.clamp_min(torch.finfo(code.dtype).tiny), 0.0)
        z = z * keep
    if more:
        total = sum(k.strength for k in knobs if k.strength > 0)
        norm = max(total, 1.0)
        idx, weights = zip(*more, strict=True)
        push = torch.zeros(h, dtype=code.dtype, device=code.device).index_add_(
            0, torch.tensor(idx, device=code.device),
            torch.tensor(weights, dtype=code.dtype, device=code.device), alpha=1.0 / norm)
        a = total / norm
        z = (1.0 - a) * z + mass * push
        keep = keep * (1.0 - a)
    return Steered(z, keep.squeeze(-1) if code.dim() == 1 else keep)


def steer_toward(code: torch.Tensor, neurons: torch.Tensor, alpha: float | torch.Tensor
                 ) -> torch.Tensor:
    """The paper's formula (§6) for a batch, each row toward its own neuron set.

    code: [batch, h] >= 0; neurons: [batch, n] long, -1 pads rows with fewer neurons
    (a row without any neuron is returned unchanged); alpha: scalar or [batch] in [0, 1].
    -> z' = (1 - alpha) z + (alpha s / |N|) sum_{n in N} e_n: [batch, h]."""
    alpha_t = torch.as_tensor(alpha, dtype=code.dtype, device=code.device)
    if ((alpha_t < 0) | (alpha_t > 1)).any():
        raise ValueError("alpha must be in [0, 1]")
    alpha_t = alpha_t.reshape(-1, 1) if alpha_t.dim() else alpha_t.expand(code.shape[0]
                                                                             ).reshape(-1, 1)
    valid = neurons >= 0
    size = valid.sum(dim=-1, keepdim=True)
    alpha_t = torch.where(size > 0, alpha_t, torch.zeros_like(alpha_t))
    mass = code.sum(dim=-1, keepdim=True)
    push = torch.zeros_like(code).scatter_add_(
        -1, neurons.clamp_min(0), valid.to(code.dtype) / size.clamp_min(1))
    return (1.0 - alpha_t) * code + alpha_t * mass * push


class ScoreBasis(NamedTuple):
    """What every user's scores share (§7): ones: [items] = 1 A^T (row sums of A);
    bias: [items] = b_dec A^T."""

    ones: torch.Tensor
    bias: torch.Tensor


class UserScores(NamedTuple):
    """One user's unsteered state (§7). code: [h]; active: {neuron: value} of its non-zero
    entries; mass: sum of the code; std: the standardisation's std of the user's
    embedding (float); offset: [items] = mean * (1 A^T) + std * (b_dec A^T);
    latent: [items] = z W_dec A^T."""

    code: torch.Tensor
    active: dict[int, float]
    mass: float
    std: float
    offset: torch.Tensor
    latent: torch.Tensor


@torch.no_grad()
def score_basis(elsa: ELSA, sae: SparseAutoencoder) -> ScoreBasis:
    return ScoreBasis(elsa.A.sum(dim=1), elsa.A @ sae.b_dec)


@torch.no_grad()
def latent_rows(elsa: ELSA, sae: SparseAutoencoder, neurons: torch.Tensor) -> torch.Tensor:
    """R[n] = W_dec[n] A^T for the given neurons: [len(neurons), items]."""
    return sae.W_dec[neurons] @ elsa.A.T


@torch.no_grad()
def user_scores(elsa: ELSA, sae: SparseAutoencoder, basis: ScoreBasis, code: torch.Tensor,
                mean: torch.Tensor, std: torch.Tensor) -> UserScores:
    """Precompute one user's scores from the SAE code (code: [h]; mean, std: one value)."""
    m, sd = float(mean.reshape(())), float(std.reshape(()))
    nz = torch.nonzero(code).ravel()
    active = dict(zip(nz.tolist(), code[nz].tolist(), strict=True))
    latent = (code @ sae.W_dec) @ elsa.A.T
    return UserScores(code, active, sum(active.values()), sd,
                      m * basis.ones + sd * basis.bias, latent)


def _less_of(mass: float, knobs: Sequence[Knob], values: dict[int, float]
             ) -> tuple[dict[int, float], float]:
    """Step 1 of the rule on a sparse code: the factor of every turned-down neuron and the
    rescale back to `mass` (0 when nothing is left)."""
    factor: dict[int, float] = {}
    for k in knobs:
        if k.strength < 0:
            for n in k.neurons:
                factor[n] = factor.get(n, 1.0) * (1.0 + k.strength)
    if not factor:
        return factor, 1.0
    # what is left: the mass less what the turned-down neurons lose (a walk over the
    # knobs' neurons, not the code's). When every active neuron is turned down it is
    # summed from the kept values instead, so all-off is exactly 0 (mass minus the
    # removed part would leave rounding noise there, blown up by mass / left).
    hit = [(values[n], f) for n, f in factor.items() if n in values]
    if len(hit) == len(values):
        left = sum(v * f for v, f in hit)
    else:
        left = mass - sum(v * (1.0 - f) for v, f in hit)
    return factor, (mass / left if left > 0 else 0.0)


def steer_values(mass: float, knobs: Sequence[Knob], values: dict[int, float]
                 ) -> tuple[float, dict[int, float]]:
    """`steer`'s rule computed on the knobs' neurons only, in Python floats: O(active +
    knob neurons), whatever h. mass: the code's L1 mass (sum of `values`); values: the
    code's non-zero entries. Returns (keep, {knob neuron: steered value}); every other
    neuron n is keep * z_n."""
    keep, factor = own_scale(mass, knobs, values)
    new = {n: values.get(n, 0.0) * factor.get(n, 1.0) * keep
           for k in knobs for n in k.neurons}
    norm = push_norm(knobs)
    for k in knobs:
        if k.strength > 0:
            for n in k.neurons:
                new[n] += mass * k.strength / norm / len(k.neurons)
    return keep, new


def own_scale(mass: float, knobs: Sequence[Knob], values: dict[int, float]
              ) -> tuple[float, dict[int, float]]:
    """How `steer`'s rule scales the code's own values: neuron n keeps
    keep * factor.get(n, 1) * z_n of its value, to which "more of" knobs add their push
    (mass * a_j / norm / |N_j| on each of their neurons). -> (keep, factor): factor holds
    the turned-down neurons. The same rule as `steer_values`, without building the knob
    neurons' values (what a "why" needs)."""
    factor, keep_less = _less_of(mass, knobs, values)
    total = sum(k.strength for k in knobs if k.strength > 0)
    return keep_less * (1.0 - total / push_norm(knobs)), factor


def push_norm(knobs: Sequence[Knob]) -> float:
    """max(A, 1), A the "more of" knobs' total strength: each knob j pushes a_j / norm of
    the mass, so strengths adding up past 1 share it."""
    return max(sum(k.strength for k in knobs if k.strength > 0), 1.0)


def knob_row(rows: torch.Tensor) -> torch.Tensor:
    """A knob's direction in item-score space: the mean of its neurons' rows R[N]
    ([|N|, items] -> [items]); a "more of" knob adds mass * strength of it (§6-§7)."""
    return rows.mean(dim=0)


def steered_scores(user: UserScores, knobs: Sequence[Knob],
                   knob_rows: torch.Tensor | Sequence[torch.Tensor],
                   neuron_row: Callable[[int], torch.Tensor],
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """ELSA's item scores u^ A^T of the user's code steered by `knobs`, before the input
    is subtracted (§7), in O((1 + knobs + turned-down active neurons) x items):

        offset + std * keep * latent
               + std * mass * sum_{j more} (a_j / norm) knob_rows[j]
               + std * (1 - A) * keep_less * sum_{n active, turned down} (f_n - 1) z_n R[n]

    (the terms of `steer`'s rule: keep_less rescales after "less of", f_n the factor of a
    turned-down neuron, A the total "more" strength, norm = max(A, 1)). knob_rows: one
    [items] row per knob (a list, or stacked [len(knobs), items]), `knob_row` of the
    knob's neuron rows (cache them per knob); neuron_row(n) -> R[n] ([items]), asked only
    for the user's active neurons that a "less of" knob turns down (cache them per
    neuron). Same result as decoding `steer`'s code. The answer is a new tensor the
    caller owns, or `out` ([items], e.g. a row of a batch's buffer) written with it: the
    same operations either way, so the same bits."""
    _check(knobs, user.code.shape[-1])
    keep, factor = own_scale(user.mass, knobs, user.active)     # keep = keep_less (1 - A)
    scores = torch.add(user.offset, user.latent, alpha=user.std * keep, out=out)
    # one in-place pass per term: no stacking, no coefficient tensors (the hot path)
    push = user.std * user.mass / push_norm(knobs)
    for k, row in zip(knobs, knob_rows, strict=True):
        if k.strength > 0:
            scores.add_(row, alpha=push * k.strength)
    if factor and keep > 0:
        c = user.std * keep
        for n, f in factor.items():
            z = user.active.get(n)
            if z is not None:
                scores.add_(neuron_row(n), alpha=c * (f - 1.0) * z)
    return scores


def knob_neurons(knobs: Sequence[Knob]) -> list[int]:
    """The distinct neurons of all knobs, sorted."""
    return sorted({n for k in knobs for n in k.neurons})
