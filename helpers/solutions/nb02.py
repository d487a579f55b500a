"""Reference solutions for notebook 02's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def par_perp_sizes(h: torch.Tensor, h_pruned: torch.Tensor):
    h, hp = h.double(), h_pruned.double()
    dh = hp - h
    coef = (dh * h).sum(-1, keepdim=True) / (h * h).sum(-1, keepdim=True)
    par = coef * h
    perp = dh - par
    n = h.norm(dim=-1)
    return par.norm(dim=-1) / n, perp.norm(dim=-1) / n


def _along_pruned(h, h_pruned):                   # projects on h' instead of h
    return par_perp_sizes(h_pruned, h_pruned + (h_pruned - h))


def _unnormalised(h, h_pruned):                   # forgets to divide by ||h||
    a, b = par_perp_sizes(h, h_pruned)
    n = h.double().norm(dim=-1)
    return a * n, b * n


def _coefficient_not_squared(h, h_pruned):        # divides by ||h|| instead of ||h||²
    h, hp = h.double(), h_pruned.double()
    dh = hp - h
    par = (dh * h).sum(-1, keepdim=True) / h.norm(dim=-1, keepdim=True) * h
    n = h.norm(dim=-1)
    return par.norm(dim=-1) / n, (dh - par).norm(dim=-1) / n


WRONG = {"par_perp_sizes": [_along_pruned, _unnormalised, _coefficient_not_squared]}
