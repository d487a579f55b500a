"""Checks for notebook 07 (pruned models as drafts for speculative decoding)."""
from __future__ import annotations

import math

import torch

from ._harness import Case, close, exercise, verify


def _number(got, want) -> bool:
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


@exercise("07", "Expected tokens per verify pass", difficulty=1, minutes=10, importance=3)
def tokens_per_pass(your_function) -> bool | None:
    """``your_function(alpha, gamma)`` -> expected tokens one verify pass yields (independent positions)."""
    from ..solutions.nb07 import tokens_per_pass as reference

    cases = [Case((0.5, 2), label="α = 0.5, γ = 2"), Case((0.8, 4), label="α = 0.8, γ = 4"),
             Case((0.0, 5), label="a draft that is never right: the bonus token only"),
             Case((1.0, 4), label="a perfect draft: every drafted token plus the bonus"),
             Case((0.95, 10), label="a long draft")]
    return verify("tokens_per_pass", your_function, cases, reference, compare=_number,
                  hint="token k of the draft (k = 1..γ) is kept when all k are accepted, with "
                       "probability α^k; the dense model's own token always comes on top. At "
                       "α = 1 the closed form divides by zero: sum the series.")


def _agreements():
    return [Case(([1, 1, 1, 0, 1, 1, 0, 1], 2), label="the worked example of the notebook"),
            Case(([1] * 12, 3), label="a perfect draft"),
            Case(([0] * 7, 4), label="a draft that is never right"),
            Case(([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1], 4), label="runs longer than γ"),
            Case(([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0], 5), label="γ = 5")]


@exercise("07", "Replay greedy speculative decoding from top-1 agreement", difficulty=2, minutes=15,
          importance=3)
def greedy_rounds(your_function) -> bool | None:
    """``your_function(agree, gamma)`` -> the number of verify passes for ``len(agree)`` tokens."""
    from ..solutions.nb07 import greedy_rounds as reference

    return verify("greedy_rounds", your_function, _agreements(), reference, compare=_number,
                  hint="a round after t tokens drafts min(γ, n − t − 1) tokens, keeps the leading "
                       "run of agreements k, and adds the dense model's token: t += k + 1.")


def _logit_pairs():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(6, 30, generator=g, dtype=torch.float64) * 2
    zq = z + 0.7 * torch.randn(6, 30, generator=g, dtype=torch.float64)
    return [Case((z, zq, 1.0), label="6 positions, T = 1"), Case((z, zq, 0.5), label="T = 0.5"),
            Case((z, z.clone(), 1.0), label="draft = dense: always accepted"),
            Case((z[:2], z[:2] + 4.0, 2.0), label="a uniform shift of the logits (same p)")]


@exercise("07", "The acceptance probability of speculative sampling", difficulty=1, minutes=10,
          importance=3)
def acceptance_probability(your_function) -> bool | None:
    """``your_function(z, z_draft, T)`` -> Σ_x min(p(x), q(x)) per row (``[rows, V]`` logits)."""
    from ..solutions.nb07 import acceptance_probability as reference

    return verify("acceptance_probability", your_function, _logit_pairs(), reference,
                  hint="accept x ~ q with probability min(1, p(x)/q(x)); summing q(x)·min(1, p/q) "
                       "over x gives Σ min(p, q), with p = softmax(z / T) and q = softmax(z_draft / T).")


@exercise("07", "The best draft length for a given acceptance and draft cost", difficulty=2,
          minutes=15, importance=2)
def best_gamma(your_function) -> bool | None:
    """``your_function(alpha, cost_ratio)`` -> the γ in 1..10 with the largest predicted speed-up."""
    from ..solutions.nb07 import best_gamma as reference

    cases = [Case((0.8, 0.05), label="a cheap draft that is often right"),
             Case((0.8, 0.5), label="the same draft at half the dense cost"),
             Case((0.6, 0.1), label="a weaker draft"),
             Case((0.95, 0.02), label="a very good, very cheap draft"),
             Case((0.3, 0.3), label="a poor draft")]
    return verify("best_gamma", your_function, cases, reference, compare=_number,
                  hint="a round costs γ draft passes (c each, in dense passes) plus one verify pass "
                       "(≈ 1) and yields (1 − α^(γ+1)) / (1 − α) tokens: maximise the ratio; on a "
                       "tie take the smaller γ.")


def _same_verdict(got, want) -> bool:
    if not (isinstance(got, tuple) and len(got) == 2):
        return False
    if bool(got[0]) != bool(want[0]):
        return False
    if want[1] is None:
        return got[1] is None
    return got[1] is not None and close(got[1], want[1], rtol=1e-6, atol=1e-9)


@exercise("07", "One verification step of speculative sampling", difficulty=3, minutes=20,
          importance=2)
def verify_token(your_function) -> bool | None:
    """``your_function(p, q, x, u)`` -> ``(True, None)`` if draft token ``x`` is kept, else
    ``(False, r)`` with ``r`` the distribution the dense model's replacement is drawn from."""
    from ..solutions.nb07 import verify_token as reference

    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.25, 0.05], dtype=torch.float64)
    cases = [Case((p, q, 0, 0.99), label="p(x) > q(x): always kept"),
             Case((p, q, 1, 0.5), label="p/q = 0.6, u = 0.5: kept"),
             Case((p, q, 1, 0.7), label="p/q = 0.6, u = 0.7: rejected"),
             Case((p, q, 2, 0.61), label="p/q = 0.6, u = 0.61: rejected"),
             Case((p, q, 3, 1.0), label="p(x) = q(x): kept")]
    return verify("verify_token", your_function, cases, reference, compare=_same_verdict,
                  hint="keep x when u ≤ p(x) / q(x); after a rejection the replacement comes from "
                       "max(0, p − q), renormalised: exactly the mass where the dense model wants "
                       "more than the draft offered.")
