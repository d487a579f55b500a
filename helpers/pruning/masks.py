r"""Which weights to zero: masks from a score matrix (magnitude, Wanda, N:M).

A mask is a boolean tensor of a weight's shape, True where the weight is set to zero.

* magnitude: score :math:`S_{ij} = |W_{ij}|`; ``scope="matrix"`` (the default, as in the Wanda
  and SparseGPT reference code) zeros the ``round(s · d_out · d_in)`` lowest scores of the whole
  matrix, ``scope="row"`` the ``round(s · d_in)`` lowest of every output row;
* Wanda: score :math:`S_{ij} = |W_{ij}| \cdot \|X_j\|_2` compared within each output row;
* ``N:M``: in every group of ``M`` consecutive input weights of a row, the ``M - N`` lowest.
"""
from __future__ import annotations

import torch

__all__ = ["lowest_k", "magnitude_mask", "row_mask", "wanda_mask"]


def lowest_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` lowest entries of the 1-D ``x`` (ties: lowest index first).

    The k-th value splits the entries; strictly smaller ones are taken, then as many ties as are
    needed. (Faster than ``topk`` for large ``k``.)
    """
    if k <= 0:
        return torch.zeros_like(x, dtype=torch.bool)
    thr = torch.kthvalue(x, k).values
    below = x < thr
    eq = x == thr
    need = k - int(below.sum())
    return below | (eq & (eq.cumsum(0) <= need))


def row_mask(score: torch.Tensor, sparsity: float | None, nm: tuple[int, int] | None) -> torch.Tensor:
    """Boolean mask (True = zero this weight) that removes the lowest scores of every row.

    Unstructured: exactly ``round(sparsity * d_in)`` per row. N:M: in each group of M consecutive
    columns, the ``M - N`` lowest.
    """
    rows, cols = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if nm is not None:
        keep, m = nm
        g = score.reshape(rows, cols // m, m)
        idx = torch.topk(g, m - keep, dim=-1, largest=False).indices
        return mask.reshape(rows, cols // m, m).scatter_(-1, idx, True).reshape(rows, cols)
    k = int(round(sparsity * cols))
    if k == 0:
        return mask
    idx = torch.topk(score, k, dim=1, largest=False).indices
    return mask.scatter_(1, idx, True)


def magnitude_mask(weight: torch.Tensor, sparsity: float | None, nm: tuple[int, int] | None,
                   scope: str = "matrix") -> torch.Tensor:
    """The magnitude mask of one weight matrix: its lowest ``|W_ij|`` per matrix or per row."""
    score = weight.detach().abs().float()
    if nm is not None or scope == "row":
        return row_mask(score, sparsity, nm)
    return lowest_k(score.flatten(), int(round(sparsity * score.numel()))).reshape(score.shape)


def wanda_mask(weight: torch.Tensor, input_norm: torch.Tensor, sparsity: float | None,
               nm: tuple[int, int] | None) -> torch.Tensor:
    """The Wanda mask: lowest ``|W_ij| · ||X_j||`` of every output row (``input_norm``: ``[d_in]``)."""
    return row_mask(weight.detach().abs().float() * input_norm.unsqueeze(0), sparsity, nm)
