"""Checks for notebook 03 (softmax amplification)."""
from __future__ import annotations

import torch

from ._harness import Case, exercise, verify


def _logit_cases():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 50, generator=g, dtype=torch.float64) * 3
    small = z + 0.05 * torch.randn(4, 50, generator=g, dtype=torch.float64)
    peaked = z.clone()
    peaked[:, 0] += 12
    return [Case((z, small, 1.0), label="random logits, small perturbation, T=1"),
            Case((z, small, 0.5), label="the same at T=0.5"),
            Case((peaked, peaked + 0.1 * torch.randn(4, 50, generator=g, dtype=torch.float64), 2.0),
                 label="a peaked distribution at T=2"),
            Case((z, z + 1.5, 1.0), label="a shift of every logit (p unchanged)")]


@exercise("03", "Theorem 3 by hand: KL(p‖p′) ≈ Var_p(Δz) / (2T²)", difficulty=1, minutes=10,
          importance=3)
def kl_estimate(your_function) -> bool | None:
    """``your_function(z, z_pruned, T)`` -> the second-order KL estimate per row, shape ``[rows]``."""
    from ..solutions.nb03 import kl_estimate as reference

    return verify("kl_estimate", your_function, _logit_cases(), reference,
                  hint="weight the variance by the dense p = softmax(z / T), centre Δz with the "
                       "same weights, and divide by 2T².")
