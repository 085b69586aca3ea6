"""Loss functions, all pure: they read tensors and return a scalar tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ELSA's loss (method.md §2): ||f/||f|| - x/||x||||^2 summed over items, batch mean.

    output, target: [batch, items].
    """
    f = F.normalize(output, dim=-1)
    x = F.normalize(target, dim=-1)
    return (f - x).pow(2).sum(dim=-1).mean()


def cosine_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(u^, u) over the batch (method.md §4). [batch, d] each."""
    return (1.0 - F.cosine_similarity(reconstruction, target, dim=-1)).mean()


def l2_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all entries (method.md §4). [batch, d] each."""
    return F.mse_loss(reconstruction, target)


def l1_sparsity(code: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the L1 norm of the code (the lambda term of §4). [batch, h]."""
    return code.abs().sum(dim=-1).mean()


def multinomial_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MultVAE reconstruction term (method.md §3): -sum_i x_i log softmax(logits)_i, batch mean."""
    return -(F.log_softmax(logits, dim=-1) * target).sum(dim=-1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions, batch mean."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)).mean()
