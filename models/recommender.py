"""A backbone with an optional SAE nested between its encoder and decoder (method.md §4).

With the SAE inserted the recommender is ReLU(u^ A^T - x) for ELSA and softmax(decode(u^))
for MultVAE, where u^ is the SAE's reconstruction of the backbone's embedding u.
"""

from __future__ import annotations

import torch
from torch import nn

from models.elsa import ELSA
from models.multvae import MultVAE
from models.sae import SparseAutoencoder


class Recommender(nn.Module):
    """backbone: ELSA or MultVAE; sae: optional, fed the backbone's embedding."""

    def __init__(self, backbone: ELSA | MultVAE, sae: SparseAutoencoder | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.sae = sae

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items] -> the backbone's embedding u: [batch, d] (no SAE)."""
        return self.backbone.encode(x)

    def output(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Decode an embedding into item scores: [batch, items]. ELSA subtracts the input
        (§2); MultVAE returns logits (the ranking is softmax's)."""
        if isinstance(self.backbone, ELSA):
            return torch.relu(self.backbone.decode(u) - x)
        return self.backbone.decode(u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, items] dense -> scores [batch, items], through the SAE when present."""
        u = self.embed(x)
        if self.sae is not None:
            u = self.sae(u).reconstruction
        return self.output(u, x)
