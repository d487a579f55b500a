"""Checks for notebook 04 (non-generative tasks: the option subspace, confidence intervals,
retrieval from hidden states)."""
from __future__ import annotations

import torch

from ._harness import Case, close, exercise, verify


def _option_cases(T_values=(1.0, 0.5, 2.0)):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, 60, generator=g, dtype=torch.float64) * 2.5
    S = torch.stack([torch.randperm(60, generator=g)[:4] for _ in range(5)])
    return z, S, [Case((z, S, T), label=f"5 items, 4 options each, T={T}") for T in T_values]


@exercise("04", "Renormalise the next-token distribution over the options", difficulty=1,
          minutes=10, importance=3)
def option_renormalise(your_function) -> bool | None:
    """``your_function(z, option_ids, T)`` -> ``p^S``: ``[items, k]``, each row summing to 1."""
    from ..solutions.nb04 import option_renormalise as reference

    _, _, cases = _option_cases()
    return verify("option_renormalise", your_function, cases, reference,
                  hint="take the logits at the option tokens (z.gather(-1, option_ids)), divide by "
                       "T, and apply a softmax over those k numbers only.")


@exercise("04", "Theorem 3 on the option subspace: KL(p^S‖p′^S) ≈ Var_{p^S}(Δz_S) / (2T²)",
          difficulty=2, minutes=15, importance=3)
def kl_options_estimate(your_function) -> bool | None:
    """``your_function(z, z_pruned, option_ids, T)`` -> the second-order estimate per item."""
    from ..solutions.nb04 import kl_options_estimate as reference

    z, S, _ = _option_cases()
    g = torch.Generator().manual_seed(5)
    small = z + 0.05 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    big = z + 0.8 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    cases = [Case((z, small, S, 1.0), label="small perturbation, T=1"),
             Case((z, big, S, 1.0), label="large perturbation, T=1"),
             Case((z, big, S, 2.0), label="large perturbation, T=2")]
    return verify("kl_options_estimate", your_function, cases, reference,
                  hint="both the weights and Δz live on the options only: weights p^S = "
                       "softmax(z_S / T) (renormalised over the k options), Δz_S = z'_S − z_S, "
                       "a weighted variance, divided by 2T².")


def _hide_cases():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(4, 80, generator=g, dtype=torch.float64)
    S = torch.stack([torch.randperm(80, generator=g)[:4] for _ in range(4)])
    z = z.scatter_add(-1, S, torch.full(S.shape, 6.0, dtype=torch.float64))   # options hold most of p
    return [Case((z, S), label="4 items whose options hold most of the probability"),
            Case((z[:1] * 2, S[:1]), label="one sharper item")]


@exercise("04", "Move p a lot while the option subspace stays exactly put", difficulty=2,
          minutes=10, importance=2)
def hide_from_options(your_function) -> bool | None:
    """``your_function(z, option_ids)`` -> ``z_pruned`` (same shape) with KL(p‖p′) ≥ 1 on every row
    but KL(p^S‖p′^S) < 1e-9."""
    from .. import metrics as M
    from ..solutions.nb04 import hide_from_options as reference

    def outcome(fn):
        def run(z, S):
            zp = fn(z, S)
            if zp is None:
                return None
            zp = torch.as_tensor(zp, dtype=torch.float64)
            if zp.shape != z.shape:
                return {"shape": tuple(zp.shape)}
            return {"kl_full_at_least_1": bool((M.kl(z, zp) >= 1).all()),
                    "kl_options_below_1e-9": bool((M.kl(M.option_logits(z, S),
                                                         M.option_logits(zp, S)) < 1e-9).all())}
        return run

    return verify("hide_from_options", outcome(your_function), _hide_cases(), outcome(reference),
                  compare=close,
                  hint="softmax over the options only sees differences between option logits; "
                       "change the tokens *outside* S, and by enough to pull probability away.")


@exercise("04", "The Wilson 95% interval of an accuracy", difficulty=1, minutes=10, importance=2)
def wilson_interval(your_function) -> bool | None:
    """``your_function(k, n, alpha=0.05)`` -> ``(lo, hi)``."""
    from ..solutions.nb04 import wilson_interval as reference

    cases = [Case((81, 263), label="k=81, n=263"), Case((0, 20), label="k=0 (nothing right)"),
             Case((20, 20), label="k=n"), Case((150, 290), label="k=150, n=290"),
             Case((7, 12), {"alpha": 0.01}, label="a 99% interval")]
    return verify("wilson_interval", your_function, cases, reference,
                  compare=lambda g, w: close(tuple(g), w, rtol=1e-6, atol=1e-9),
                  hint="z = Φ⁻¹(1 − α/2) (1.96 for 95%); centre (p̂ + z²/2n)/(1 + z²/n), half-width "
                       "z·sqrt(p̂(1−p̂)/n + z²/4n²)/(1 + z²/n).")


def _rank_cases():
    g = torch.Generator().manual_seed(7)
    idx = torch.randn(6, 16, generator=g, dtype=torch.float64)
    q = idx + 0.6 * torch.randn(6, 16, generator=g, dtype=torch.float64)
    scale = torch.tensor([1.0, 8.0, 0.2, 3.0, 1.0, 0.5], dtype=torch.float64)[:, None]
    q2 = q.clone()
    q2[0] = idx[1]                                   # query 0 points at passage 1
    return [Case((idx, q), label="6 passages, noisy queries"),
            Case((idx * scale, q2), label="passages of very different lengths, one query off"),
            Case((idx[:4], torch.cat([idx[1:2], idx[0:1], idx[3:4], idx[2:3]]) * 2),
                 label="every query is another passage")]


@exercise("04", "Reciprocal rank of the right passage (cosine ranking)", difficulty=2, minutes=15,
          importance=2)
def reciprocal_rank(your_function) -> bool | None:
    """``your_function(index_emb, query_emb)`` -> ``[queries]``: 1 / rank of passage ``i`` for
    query ``i`` when the passages are sorted by cosine similarity (best first, rank 1)."""
    from ..solutions.nb04 import reciprocal_rank as reference

    return verify("reciprocal_rank", your_function, _rank_cases(), reference,
                  hint="normalise both sets of vectors, sim = q @ index.T, and count the passages "
                       "that beat the right one for each query (rank = 1 + that count).")
