"""MultVAE (Liang et al., WWW 2018), the paper's second backbone (method.md §3).

Input: the L2-normalised history with dropout 0.5; encoder items -> 3d (tanh) -> mu,
logvar (d each); decoder d -> 3d (tanh) -> items; softmax output. The SAE is fed mu.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class VAEOutput(NamedTuple):
    """logits: [batch, items]; mu, logvar: [batch, d]."""

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


class MultVAE(nn.Module):
    """Multinomial VAE. `encode` returns mu (the embedding the SAE reads), `decode` logits."""

    def __init__(self, n_items: int, d: int, dropout: float = 0.5) -> None:
        super().__init__()
        if n_items < 1 or d < 1:
            raise ValueError(f"MultVAE needs n_items >= 1 and d >= 1, got {n_items}, {d}")
        hidden = 3 * d
        self.d = d
        self.enc_hidden = nn.Linear(n_items, hidden)
        self.enc_out = nn.Linear(hidden, 2 * d)
        self.dec_hidden = nn.Linear(d, hidden)
        self.dec_out = nn.Linear(hidden, n_items)
        self.drop = nn.Dropout(dropout)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.is_sparse:
            h = torch.tanh(self._hidden_of_sparse(x))
        else:
            h = torch.tanh(self.enc_hidden(self.drop(F.normalize(x, dim=-1))))
        mu, logvar = self.enc_out(h).chunk(2, dim=-1)
        return mu, logvar

    def _hidden_of_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer on a sparse COO batch without densifying it: the L2
        normalisation scales the stored values, the product touches only them. Dropout
        acts on the dense input, so this is for eval mode (embedding histories)."""
        if self.training and self.drop.p > 0:
            raise ValueError("MultVAE takes sparse input in eval mode only (input dropout "
                             "needs the dense history); call .eval() first")
        x = x.coalesce()
        rows, values = x.indices()[0], x.values()
        norms = torch.zeros(x.shape[0], dtype=values.dtype, device=values.device)
        norms.index_add_(0, rows, values * values)
        scaled = torch.sparse_coo_tensor(x.indices(), values / norms.sqrt().clamp_min(1e-12)[rows],
                                         x.shape, is_coalesced=True, check_invariants=False)
        # the product wants a row-major [items, hidden] operand, not the weight's view
        weight = self.enc_hidden.weight.T.contiguous()
        return torch.sparse.mm(scaled, weight) + self.enc_hidden.bias

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items], dense or (eval mode) sparse -> mu: [batch, d] (dropout only
        in training mode)."""
        return self._encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [batch, d] -> logits: [batch, items]."""
        return self.dec_out(torch.tanh(self.dec_hidden(z)))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Training pass with the reparameterisation trick; in eval mode z = mu."""
        mu, logvar = self._encode(x)
        if self.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        return VAEOutput(self.decode(z), mu, logvar)
