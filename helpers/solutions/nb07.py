"""Reference solutions for notebook 07's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def tokens_per_pass(alpha, gamma):
    """Expected tokens per verify pass: 1 + α + α² + … + α^γ = (1 − α^(γ+1)) / (1 − α)."""
    return sum(alpha ** k for k in range(gamma + 1))


def greedy_rounds(agree, gamma):
    """Verify passes greedy speculative decoding needs for the dense continuation of len(agree)."""
    n, t, rounds = len(agree), 0, 0
    while t < n:
        g = min(gamma, n - t - 1)           # leave room for the dense model's bonus token
        k = 0
        while k < g and agree[t + k]:
            k += 1
        t += k + 1
        rounds += 1
    return rounds


def acceptance_probability(z, z_draft, T=1.0):
    """Σ_x min(p(x), q(x)) per row, p = softmax(z / T) (dense), q = softmax(z_draft / T) (draft)."""
    p = torch.softmax(z.double() / T, -1)
    q = torch.softmax(z_draft.double() / T, -1)
    return torch.minimum(p, q).sum(-1)


def best_gamma(alpha, cost_ratio, max_gamma=10):
    """The draft length γ in 1..max_gamma that maximises E[tokens per pass] / (γ·c + 1)."""
    def speed(g):
        return tokens_per_pass(alpha, g) / (g * cost_ratio + 1.0)
    return max(range(1, max_gamma + 1), key=lambda g: (speed(g), -g))


def verify_token(p, q, x, u):
    """One step of speculative sampling: keep draft token x if u ≤ p(x)/q(x); else resample.

    Returns (accepted, distribution the next token is drawn from): (True, None) when accepted,
    (False, norm(max(0, p − q))) when rejected.
    """
    p, q = p.double(), q.double()
    if u <= p[x] / q[x]:
        return True, None
    residual = (p - q).clamp_min(0)
    return False, residual / residual.sum()


# ----------------------------------------------------------------------------- wrong answers

def _no_bonus(alpha, gamma):                 # forgets the dense model's own token
    return sum(alpha ** k for k in range(1, gamma + 1))


def _geometric_infinite(alpha, gamma):      # ignores the cap at γ drafted tokens
    return 1.0 / (1.0 - alpha) if alpha < 1 else float("inf")


def _mean_alpha_times_gamma(alpha, gamma):  # "α of the γ tokens are accepted", plus the bonus
    return 1.0 + alpha * gamma


def _rounds_no_bonus(agree, gamma):          # a round that accepts k tokens advances by k only
    n, t, rounds = len(agree), 0, 0
    while t < n:
        g = min(gamma, n - t - 1)
        k = 0
        while k < g and agree[t + k]:
            k += 1
        t += max(k, 1)
        rounds += 1
    return rounds


def _rounds_count_all_agreements(agree, gamma):   # counts agreements after the first rejection too
    n, t, rounds = len(agree), 0, 0
    while t < n:
        g = min(gamma, n - t - 1)
        t += sum(bool(a) for a in agree[t:t + g]) + 1
        rounds += 1
    return rounds


def _rounds_gamma_plus_one(agree, gamma):    # off by one: drafts γ + 1 tokens per round
    return greedy_rounds(agree, gamma + 1)


def _max_instead_of_min(z, z_draft, T=1.0):  # Σ max(p, q) = 1 + TV, not the overlap
    p = torch.softmax(z.double() / T, -1)
    q = torch.softmax(z_draft.double() / T, -1)
    return torch.maximum(p, q).sum(-1)


def _no_temperature(z, z_draft, T=1.0):      # forgets T
    return acceptance_probability(z, z_draft, 1.0)


def _one_minus_kl(z, z_draft, T=1.0):       # 1 − KL is not the overlap
    lp = torch.log_softmax(z.double() / T, -1)
    lq = torch.log_softmax(z_draft.double() / T, -1)
    return 1 - (lp.exp() * (lp - lq)).sum(-1)


def _top1_agreement(z, z_draft, T=1.0):     # greedy acceptance, not the sampling one
    return (z.argmax(-1) == z_draft.argmax(-1)).double()


def _best_gamma_ignores_cost(alpha, cost_ratio, max_gamma=10):   # maximises tokens per pass
    return max(range(1, max_gamma + 1), key=lambda g: tokens_per_pass(alpha, g))


def _best_gamma_per_draft_token(alpha, cost_ratio, max_gamma=10):  # acceptance rate, not speed
    return max(range(1, max_gamma + 1), key=lambda g: ((tokens_per_pass(alpha, g) - 1) / g, -g))


def _verify_ratio_reversed(p, q, x, u):      # q/p instead of p/q
    p, q = p.double(), q.double()
    if u <= q[x] / p[x]:
        return True, None
    residual = (p - q).clamp_min(0)
    return False, residual / residual.sum()


def _verify_resample_from_p(p, q, x, u):     # after a rejection, samples from p itself (biased)
    p, q = p.double(), q.double()
    if u <= p[x] / q[x]:
        return True, None
    return False, p / p.sum()


WRONG = {
    "tokens_per_pass": [_no_bonus, _geometric_infinite, _mean_alpha_times_gamma],
    "greedy_rounds": [_rounds_no_bonus, _rounds_count_all_agreements, _rounds_gamma_plus_one],
    "acceptance_probability": [_max_instead_of_min, _no_temperature, _one_minus_kl, _top1_agreement],
    "best_gamma": [_best_gamma_ignores_cost, _best_gamma_per_draft_token],
    "verify_token": [_verify_ratio_reversed, _verify_resample_from_p],
}
