"""Reference solutions for notebook 01's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def wanda_mask(W: torch.Tensor, x_norm: torch.Tensor, sparsity: float) -> torch.Tensor:
    score = W.abs() * x_norm[None, :]
    k = int(round(sparsity * W.shape[1]))
    idx = score.topk(k, dim=1, largest=False).indices
    return torch.zeros_like(W, dtype=torch.bool).scatter_(1, idx, True)


def _magnitude_only(W, x_norm, sparsity):            # forgets the inputs
    return wanda_mask(W, torch.ones_like(x_norm), sparsity)


def _per_matrix(W, x_norm, sparsity):                 # one threshold for the whole matrix
    score = (W.abs() * x_norm[None, :]).flatten()
    k = int(round(sparsity * score.numel()))
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask[score.topk(k, largest=False).indices] = True
    return mask.reshape(W.shape)


def _keep_mask(W, x_norm, sparsity):                 # marks the weights to KEEP (the highest scores)
    return ~wanda_mask(W, x_norm, 1 - sparsity)


WRONG = {"wanda_mask": [_magnitude_only, _per_matrix, _keep_mask]}
