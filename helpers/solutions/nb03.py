"""Reference solutions for notebook 03's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def kl_estimate(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    p = torch.softmax(z.double() / T, dim=-1)
    dz = (z_pruned - z).double()
    mean = (p * dz).sum(-1, keepdim=True)
    return (p * (dz - mean) ** 2).sum(-1) / (2 * T * T)


def _uniform_weights(z, z_pruned, T=1.0):          # plain variance over the vocabulary
    dz = (z_pruned - z).double()
    return dz.var(-1, unbiased=False) / (2 * T * T)


def _no_temperature(z, z_pruned, T=1.0):           # forgets T in both places
    return kl_estimate(z, z_pruned, 1.0)


def _pruned_weights(z, z_pruned, T=1.0):           # weights by p' instead of the dense p
    return kl_estimate(z_pruned, z_pruned + (z_pruned - z), T)


WRONG = {"kl_estimate": [_uniform_weights, _no_temperature, _pruned_weights]}
