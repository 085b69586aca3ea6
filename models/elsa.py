"""ELSA: a scalable linear shallow autoencoder (method.md §2).

One matrix A [items, d] with unit-norm rows. Encode z = x A; decode z A^T;
the recommender's output is ReLU(x A A^T - x).
"""

from __future__ import annotations

import torch
from torch import nn


class ELSA(nn.Module):
    """A: [items, d], rows of unit L2 norm (kept so by `normalize_` after every step)."""

    def __init__(self, n_items: int, d: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_items < 1 or d < 1:
            raise ValueError(f"ELSA needs n_items >= 1 and d >= 1, got {n_items}, {d}")
        weight = torch.empty(n_items, d)
        nn.init.xavier_uniform_(weight, generator=generator)
        self.A = nn.Parameter(weight)
        self.normalize_()

    @property
    def n_items(self) -> int:
        return int(self.A.shape[0])

    @property
    def d(self) -> int:
        return int(self.A.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items] (dense or sparse) -> z: [batch, d]."""
        if x.is_sparse:
            return torch.sparse.mm(x, self.A)
        return x @ self.A

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [batch, d] -> item scores before the input is subtracted: [batch, items]."""
        return z @ self.A.T

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items] dense -> x A A^T - x, before the ReLU: [batch, items]."""
        return self.decode(self.encode(x)) - x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items] dense -> ReLU(x A A^T - x): [batch, items] (§2)."""
        return torch.relu(self.logits(x))

    @torch.no_grad()
    def normalize_(self) -> None:
        """Renormalise every row of A to unit L2 norm (§2)."""
        self.A.div_(self.A.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_grad_(self) -> None:
        """Project A's gradient onto the tangent space of the unit sphere, row by row:
        g <- g - (g . a) a (§2). Call after backward, before the optimiser step."""
        if self.A.grad is not None:
            g = self.A.grad
            g.sub_((g * self.A).sum(dim=1, keepdim=True) * self.A)
