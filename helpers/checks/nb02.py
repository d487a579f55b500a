"""Checks for notebook 02 (hooking the representation spaces)."""
from __future__ import annotations

import torch

from ._harness import Case, exercise, verify


def _cases():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(5, 12, generator=g, dtype=torch.float64)
    turn = h + 0.1 * torch.randn(5, 12, generator=g, dtype=torch.float64)
    return [Case((h, turn), label="a small random change"),
            Case((h, 0.8 * h), label="a pure shrink (all parallel)"),
            Case((h, h + torch.linalg.cross(h[:, :3], torch.ones(5, 3, dtype=torch.float64)).repeat(1, 4)),
                 label="a change with a parallel and an orthogonal part"),
            Case((h[0], h[0] - 0.3 * h[0] + 0.2), label="one vector (no batch dimension)")]


@exercise("02", "Split Δh into its parallel and orthogonal parts", difficulty=2, minutes=10, importance=2)
def par_perp_sizes(your_function) -> bool | None:
    """``your_function(h, h_pruned)`` -> ``(||Δh_par|| / ||h||, ||Δh_perp|| / ||h||)`` per row."""
    from ..solutions.nb02 import par_perp_sizes as reference

    return verify("par_perp_sizes", your_function, _cases(), reference, compare=lambda g, w: (
        isinstance(g, (tuple, list)) and len(g) == 2 and all(
            torch.allclose(torch.as_tensor(a, dtype=torch.float64), b, rtol=1e-6, atol=1e-9) for a, b in zip(g, w))),
                  hint="Δh = h' − h; the coefficient along h is <Δh, h> / ||h||² (a sum over the LAST "
                       "dimension); Δh_par = coefficient · h, Δh_perp = Δh − Δh_par; divide both norms by ||h||.")
