r"""Distances between a dense and a pruned representation, and the paper's second-order estimates.

Every function takes tensors whose **last dimension** is the representation (``d`` for hidden
states, the vocabulary for logits and probabilities) and returns one value per leading index, so
it works on a single vector, a sequence, or a batch of sequences alike. Dense first, pruned second.

Notation (as in ``SERIES.md`` and He et al., 2026, arXiv:2603.24652):

* ``x`` dense, ``x' = x + Δx`` pruned; :math:`Δx_\parallel = \frac{\langle Δx, x\rangle}{\|x\|^2}x`,
  :math:`Δx_\perp = Δx - Δx_\parallel`.
* ``z`` logits, ``p = softmax(z / T)``; :math:`\mathrm{Var}_w(v) = \sum_i w_i (v_i - \sum_j w_j v_j)^2`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "EPS", "cosine", "one_minus_cos", "par_perp", "relative_norm_change", "log_softmax", "kl",
    "js", "total_variation", "top1_agree", "weighted_var", "second_order_cos", "second_order_kl",
    "second_order_cos_p", "option_logits", "option_probs",
]

EPS = 1e-12


def _f(x: torch.Tensor) -> torch.Tensor:
    """Compute in float64 at least: the differences of interest are tiny."""
    return x.to(torch.float64) if x.dtype != torch.float64 else x


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Cosine similarity :math:`\langle a, b\rangle / (\|a\|\,\|b\|)` along the last dimension.

    Two zero vectors count as identical (1); one zero vector against a non-zero one gives 0.
    """
    a, b = _f(a), _f(b)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(EPS)
    both_zero = (na <= EPS) & (nb <= EPS)
    return torch.where(both_zero, torch.ones_like(cos), cos.clamp(-1.0, 1.0))


def one_minus_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Cosine *distance* :math:`1 - \cos(a, b)`, computed without cancellation.

    Uses :math:`1-\cos = \tfrac12 \| \hat a - \hat b \|^2` for unit vectors, which stays accurate
    when the two vectors are nearly parallel (where ``1 - cosine(a, b)`` would round to 0).
    """
    a, b = _f(a), _f(b)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    d = 0.5 * ((a / na.clamp_min(EPS)) - (b / nb.clamp_min(EPS))).pow(2).sum(-1)
    both_zero = (na.squeeze(-1) <= EPS) & (nb.squeeze(-1) <= EPS)
    return torch.where(both_zero, torch.zeros_like(d), d)


def par_perp(x: torch.Tensor, x_pruned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Split :math:`Δx = x' - x` into its part along ``x`` and the rest.

    Returns ``(Δx_par, Δx_perp)`` with :math:`Δx_\parallel = (\langle Δx, x\rangle/\|x\|^2)\,x` and
    :math:`Δx_\perp = Δx - Δx_\parallel` (same shape as ``x``). For ``x = 0`` all of Δx is "perp".
    """
    x, xp = _f(x), _f(x_pruned)
    dx = xp - x
    coef = (dx * x).sum(-1, keepdim=True) / x.pow(2).sum(-1, keepdim=True).clamp_min(EPS)
    par = coef * x
    return par, dx - par


def relative_norm_change(x: torch.Tensor, x_pruned: torch.Tensor) -> torch.Tensor:
    r""":math:`(\|x'\| - \|x\|) / \|x\|`: how much longer (or shorter) the pruned vector is."""
    x, xp = _f(x), _f(x_pruned)
    n = x.norm(dim=-1)
    return (xp.norm(dim=-1) - n) / n.clamp_min(EPS)


def log_softmax(z: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """``log softmax(z / T)`` in float64 (stable for any logits, including ±large values)."""
    if T <= 0:
        raise ValueError(f"The temperature T must be positive, got {T}.")
    return F.log_softmax(_f(z) / T, dim=-1)


def kl(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p\,\|\,p') = \sum_i p_i (\log p_i - \log p'_i)` with ``p = softmax(z/T)``.

    Takes *logits* (so it can use log-softmax); terms with ``p_i = 0`` contribute 0.
    """
    lp, lq = log_softmax(z, T), log_softmax(z_pruned, T)
    p = lp.exp()
    return torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(-1).clamp_min(0.0)


def js(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Jensen–Shannon divergence :math:`\tfrac12 \mathrm{KL}(p\|m) + \tfrac12 \mathrm{KL}(p'\|m)`,
    :math:`m = (p + p')/2`, in nats (at most :math:`\ln 2`)."""
    lp, lq = log_softmax(z, T), log_softmax(z_pruned, T)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    p, q = lp.exp(), lq.exp()
    a = torch.where(p > 0, p * (lp - lm), torch.zeros_like(p)).sum(-1)
    b = torch.where(q > 0, q * (lq - lm), torch.zeros_like(q)).sum(-1)
    return (0.5 * (a + b)).clamp_min(0.0)


def total_variation(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Total variation distance :math:`\tfrac12 \sum_i |p_i - p'_i|` (between 0 and 1)."""
    return 0.5 * (log_softmax(z, T).exp() - log_softmax(z_pruned, T).exp()).abs().sum(-1)


def top1_agree(z: torch.Tensor, z_pruned: torch.Tensor) -> torch.Tensor:
    """1.0 where the dense and pruned arg-max tokens agree, else 0.0."""
    return (z.argmax(-1) == z_pruned.argmax(-1)).to(torch.float64)


def weighted_var(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{Var}_w(v) = \sum_i w_i (v_i - \sum_j w_j v_j)^2` for weights summing to 1."""
    v, w = _f(v), _f(w)
    mean = (w * v).sum(-1, keepdim=True)
    return (w * (v - mean).pow(2)).sum(-1)


def second_order_cos(x: torch.Tensor, x_pruned: torch.Tensor) -> torch.Tensor:
    r"""Theorem 1 estimate: :math:`1 - \cos(x, x+Δx) \approx \|Δx_\perp\|^2 / (2\|x\|^2)`.

    Valid in any space when :math:`\|Δx\| \ll \|x\|`; the parallel part does not change direction.
    """
    _, perp = par_perp(x, x_pruned)
    return perp.pow(2).sum(-1) / (2 * _f(x).pow(2).sum(-1).clamp_min(EPS))


def second_order_kl(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Theorem 3 estimate: :math:`\mathrm{KL}(p\|p') \approx \mathrm{Var}_{i\sim p}(Δz_i) / (2T^2)`.

    Exactly 0 for a shift of all logits by one constant (softmax does not see it).
    """
    p = log_softmax(z, T).exp()
    return weighted_var(_f(z_pruned) - _f(z), p) / (2 * T * T)


def second_order_cos_p(z: torch.Tensor, z_pruned: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    r"""Theorem 2 estimate: :math:`1 - \cos(p, p') \approx \mathrm{Var}_r(Δz) / (2T^2)` with
    :math:`r_i = p_i^2 / \|p\|^2` (the probability-squared weights: the top tokens dominate)."""
    lp = log_softmax(z, T)
    # r = p^2 / sum p^2, computed from log p for stability (no underflow to 0/0).
    r = torch.softmax(2 * lp, dim=-1)
    return weighted_var(_f(z_pruned) - _f(z), r) / (2 * T * T)


def option_logits(z: torch.Tensor, option_ids) -> torch.Tensor:
    """Logits restricted to the option tokens ``S`` of a multiple-choice item (last dim → |S|)."""
    idx = torch.as_tensor(option_ids, device=z.device, dtype=torch.long)
    return z.index_select(-1, idx)


def option_probs(z: torch.Tensor, option_ids, T: float = 1.0) -> torch.Tensor:
    """``p`` restricted to the option tokens and renormalised: ``softmax(z_S / T)``."""
    return log_softmax(option_logits(z, option_ids), T).exp()
