"""Checks for notebook 01 (pruning basics)."""
from __future__ import annotations

import torch

from ._harness import Case, exercise, verify


def _cases():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(6, 16, generator=g)
    norms = torch.rand(16, generator=g) + 0.1
    norms[3] = 40.0                             # one input feature far larger than the rest
    return [Case((W, norms, 0.5), label="6 x 16 weights, one large input feature, 50%"),
            Case((W, torch.ones(16), 0.5), label="all input norms equal (Wanda = magnitude per row)"),
            Case((W, norms, 0.25), label="25% sparsity"),
            Case((W * torch.linspace(0.1, 3, 6)[:, None], norms, 0.75), label="rows of very different scales, 75%")]


@exercise("01", "Wanda's mask by hand: the lowest |W_ij| · ||X_j|| of every row", difficulty=1, minutes=10,
          importance=3)
def wanda_mask(your_function) -> bool | None:
    """``your_function(W, x_norm, sparsity)`` -> boolean mask of W's shape, True = zero this weight."""
    from ..solutions.nb01 import wanda_mask as reference

    def same(got, want):
        return isinstance(got, torch.Tensor) and got.shape == want.shape and bool(torch.equal(got.bool(), want))

    return verify("wanda_mask", your_function, _cases(), reference, compare=same,
                  hint="score S = |W| * x_norm (x_norm broadcast over the rows, i.e. along the input "
                       "dimension), then in EVERY ROW mark the round(sparsity * d_in) lowest scores.")
