"""MultVAE (Liang et al., WWW 2018), the paper's second backbone (method.md §3).

Input: the L2-normalised history with dropout 0.5; encoder items -> 3d (tanh) -> mu,
logvar (d each); decoder d -> 3d (tanh) -> items; softmax output. The SAE is fed mu.

Histories are sparse: the encoder's first layer takes a sparse batch as well as a dense
one and then touches only the stored entries (normalisation, dropout and product).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class VAEOutput(NamedTuple):
    """logits: [batch, items]; mu, logvar: [batch, d]."""

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


class ItemsLinear(nn.Module):
    """The encoder's first layer, items -> hidden, with its weight stored [items, hidden]:
    a sparse batch times it is one sparse product whose gradient comes back in the
    weight's own layout (nn.Linear's [hidden, items] would need a transposed copy of the
    whole weight each step, as costly as the dense product it saves). Initialised as
    nn.Linear, from the global random number generator."""

    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        weight = torch.empty(hidden, n_items)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight = nn.Parameter(weight.T.contiguous())
        bound = 1 / math.sqrt(n_items)
        self.bias = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items], dense or sparse COO -> [batch, hidden]."""
        if x.is_sparse:
            return torch.sparse.mm(x, self.weight) + self.bias
        return x @ self.weight + self.bias


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row of a sparse COO batch divided by its L2 norm (empty rows stay empty)."""
    x = x.coalesce()
    rows, values = x.indices()[0], x.values()
    norms = torch.zeros(x.shape[0], dtype=values.dtype, device=values.device)
    norms.index_add_(0, rows, values * values)
    return torch.sparse_coo_tensor(x.indices(), values / norms.sqrt().clamp_min(1e-12)[rows],
                                   x.shape, is_coalesced=True, check_invariants=False)


def sparse_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout on a coalesced sparse COO batch: each stored entry is zeroed with chance p,
    the rest scaled by 1 / (1 - p); what nn.Dropout does to the dense tensor, whose
    other entries are zero either way. Draws from the global random number generator."""
    values = x.values()
    keep = torch.rand(values.shape, dtype=values.dtype, device=values.device) >= p
    return torch.sparse_coo_tensor(x.indices(), values * keep / (1.0 - p), x.shape,
                                   is_coalesced=True, check_invariants=False)


class MultVAE(nn.Module):
    """Multinomial VAE. `encode` returns mu (the embedding the SAE reads), `decode` logits."""

    def __init__(self, n_items: int, d: int, dropout: float = 0.5) -> None:
        super().__init__()
        if n_items < 1 or d < 1:
            raise ValueError(f"MultVAE needs n_items >= 1 and d >= 1, got {n_items}, {d}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultVAE dropout must be in [0, 1), got {dropout}")
        hidden = 3 * d
        self.d = d
        self.enc_hidden = ItemsLinear(n_items, hidden)
        self.enc_out = nn.Linear(hidden, 2 * d)
        self.dec_hidden = nn.Linear(d, hidden)
        self.dec_out = nn.Linear(hidden, n_items)
        self.drop = nn.Dropout(dropout)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.is_sparse:
            x = normalize_rows(x)
            if self.training and self.drop.p > 0:
                x = sparse_dropout(x, self.drop.p)
        else:
            x = self.drop(F.normalize(x, dim=-1))
        h = torch.tanh(self.enc_hidden(x))
        mu, logvar = self.enc_out(h).chunk(2, dim=-1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items], dense or sparse COO -> mu: [batch, d] (dropout only in
        training mode)."""
        return self._encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [batch, d] -> logits: [batch, items]."""
        return self.dec_out(torch.tanh(self.dec_hidden(z)))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Training pass with the reparameterisation trick; in eval mode z = mu.
        x: [batch, items], dense or sparse COO."""
        mu, logvar = self._encode(x)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        return VAEOutput(self.decode(z), mu, logvar)
