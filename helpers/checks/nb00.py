"""Checks for notebook 00 (start here)."""
from __future__ import annotations

import torch

from ._harness import Case, exercise, verify


def _cases():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 20, generator=g, dtype=torch.float64) * 4
    return [Case((z, 1.0), label="random logits, T = 1"),
            Case((z, 0.25), label="the same logits, T = 0.25 (sharper)"),
            Case((z, 5.0), label="the same logits, T = 5 (flatter)"),
            Case((z + 1000.0, 1.0), label="every logit shifted by +1000 (exp overflows unless you subtract the max)"),
            Case((torch.tensor([2.0, 2.0, 2.0, 2.0], dtype=torch.float64), 0.7), label="all logits equal")]


@exercise("00", "Softmax with a temperature, by hand (and stable)", difficulty=1, minutes=10, importance=2)
def softmax_with_temperature(your_function) -> bool | None:
    """``your_function(z, T)`` -> ``softmax(z / T)`` along the last dimension, same shape as ``z``."""
    from ..solutions.nb00 import softmax_with_temperature as reference

    return verify("softmax_with_temperature", your_function, _cases(), reference,
                  hint="divide by T first, subtract the largest value of each row before exp (softmax "
                       "ignores a shift of all logits), then normalise each row to sum 1.")
