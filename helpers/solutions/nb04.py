"""Reference solutions for notebook 04's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import math

import torch


# ----------------------------------------------------------------------------- option_renormalise
def option_renormalise(z: torch.Tensor, option_ids: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    zS = z.double().gather(-1, option_ids)
    return torch.softmax(zS / T, dim=-1)


def _no_renormalisation(z, option_ids, T=1.0):     # p of the full vocabulary, read at S
    return torch.softmax(z.double() / T, dim=-1).gather(-1, option_ids)


def _renormalise_without_temperature(z, option_ids, T=1.0):
    return option_renormalise(z, option_ids, 1.0)


def _linear_normalise(z, option_ids, T=1.0):       # z_S / sum z_S: not a softmax
    zS = z.double().gather(-1, option_ids)
    return zS / zS.sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- kl_options_estimate
def kl_options_estimate(z: torch.Tensor, z_pruned: torch.Tensor, option_ids: torch.Tensor,
                        T: float = 1.0) -> torch.Tensor:
    zS, zS_ = z.double().gather(-1, option_ids), z_pruned.double().gather(-1, option_ids)
    w = torch.softmax(zS / T, dim=-1)
    dz = zS_ - zS
    mean = (w * dz).sum(-1, keepdim=True)
    return (w * (dz - mean) ** 2).sum(-1) / (2 * T * T)


def _full_p_weights(z, z_pruned, option_ids, T=1.0):   # weights p_S not renormalised
    zS, zS_ = z.double().gather(-1, option_ids), z_pruned.double().gather(-1, option_ids)
    w = torch.softmax(z.double() / T, dim=-1).gather(-1, option_ids)
    dz = zS_ - zS
    mean = (w * dz).sum(-1, keepdim=True) / w.sum(-1, keepdim=True)
    return (w * (dz - mean) ** 2).sum(-1) / (2 * T * T)


def _uniform_option_weights(z, z_pruned, option_ids, T=1.0):
    dz = (z_pruned.double() - z.double()).gather(-1, option_ids)
    return dz.var(-1, unbiased=False) / (2 * T * T)


def _full_vocabulary_estimate(z, z_pruned, option_ids, T=1.0):
    p = torch.softmax(z.double() / T, dim=-1)
    dz = z_pruned.double() - z.double()
    mean = (p * dz).sum(-1, keepdim=True)
    return (p * (dz - mean) ** 2).sum(-1) / (2 * T * T)


# ----------------------------------------------------------------------------- hide_from_options
def hide_from_options(z: torch.Tensor, option_ids: torch.Tensor) -> torch.Tensor:
    """Add the same large amount to every token outside the options: p^S is unchanged, but the
    options lose almost all of their full-vocabulary probability."""
    outside = torch.ones_like(z, dtype=torch.bool).scatter(-1, option_ids, False)
    return z + 10.0 * outside


def _boost_the_answer_token(z, option_ids):        # moves p, but also p^S
    return z.scatter_add(-1, option_ids[..., :1], torch.full_like(z[..., :1], 10.0))


def _shift_everything(z, option_ids):              # p does not move at all
    return z + 10.0


def _move_one_outsider_a_little(z, option_ids):    # p^S fixed, but p hardly moves
    outside = torch.ones_like(z, dtype=torch.bool).scatter(-1, option_ids, False)
    j = outside.to(torch.int64).argmax(-1, keepdim=True)
    return z.scatter_add(-1, j, torch.full_like(z[..., :1], 0.1))


# ----------------------------------------------------------------------------- wilson_interval
def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    from statistics import NormalDist

    zq = NormalDist().inv_cdf(1 - alpha / 2)
    ph = k / n
    den = 1 + zq * zq / n
    centre = (ph + zq * zq / (2 * n)) / den
    half = zq * math.sqrt(ph * (1 - ph) / n + zq * zq / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _wald(k, n, alpha=0.05):                        # the textbook interval: collapses at 0 and n
    from statistics import NormalDist

    zq = NormalDist().inv_cdf(1 - alpha / 2)
    ph = k / n
    half = zq * math.sqrt(ph * (1 - ph) / n)
    return (max(0.0, ph - half), min(1.0, ph + half))


def _one_sided_quantile(k, n, alpha=0.05):          # z = 1.645: a 90% interval
    from statistics import NormalDist

    zq = NormalDist().inv_cdf(1 - alpha)
    ph = k / n
    den = 1 + zq * zq / n
    centre = (ph + zq * zq / (2 * n)) / den
    half = zq * math.sqrt(ph * (1 - ph) / n + zq * zq / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


# ----------------------------------------------------------------------------- reciprocal_rank
def reciprocal_rank(index_emb: torch.Tensor, query_emb: torch.Tensor) -> torch.Tensor:
    a = index_emb.double() / index_emb.double().norm(dim=-1, keepdim=True)
    q = query_emb.double() / query_emb.double().norm(dim=-1, keepdim=True)
    sim = q @ a.T
    right = sim.diagonal()
    rank = 1 + (sim > right[:, None]).sum(-1)
    return 1.0 / rank.double()


def _dot_product(index_emb, query_emb):             # forgets to normalise: long passages win
    sim = query_emb.double() @ index_emb.double().T
    rank = 1 + (sim > sim.diagonal()[:, None]).sum(-1)
    return 1.0 / rank.double()


def _passages_rank_queries(index_emb, query_emb):   # the transpose: for each passage, rank queries
    return reciprocal_rank(query_emb, index_emb)


def _ascending(index_emb, query_emb):               # sorts by distance the wrong way round
    a = index_emb.double() / index_emb.double().norm(dim=-1, keepdim=True)
    q = query_emb.double() / query_emb.double().norm(dim=-1, keepdim=True)
    sim = q @ a.T
    rank = 1 + (sim < sim.diagonal()[:, None]).sum(-1)
    return 1.0 / rank.double()


WRONG = {
    "option_renormalise": [_no_renormalisation, _renormalise_without_temperature, _linear_normalise],
    "kl_options_estimate": [_full_p_weights, _uniform_option_weights, _full_vocabulary_estimate],
    "hide_from_options": [_boost_the_answer_token, _shift_everything, _move_one_outsider_a_little],
    "wilson_interval": [_wald, _one_sided_quantile],
    "reciprocal_rank": [_dot_product, _passages_rank_queries, _ascending],
}
