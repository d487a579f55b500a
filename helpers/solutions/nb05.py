"""Reference solutions for notebook 05's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def first_divergence_step(dense_ids, pruned_ids):
    n = min(len(dense_ids), len(pruned_ids))
    for t in range(n):
        if dense_ids[t] != pruned_ids[t]:
            return t + 1
    return n + 1 if len(dense_ids) != len(pruned_ids) else None


def distinct_n(ids, n=2):
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def accumulated_kl(z, z_pruned, T=1.0):
    lp = torch.log_softmax(z.double() / T, -1)
    lq = torch.log_softmax(z_pruned.double() / T, -1)
    return (lp.exp() * (lp - lq)).sum(-1).cumsum(0)


def steps_on_track(pieces, target):
    text = ""
    for t, piece in enumerate(pieces):
        text += piece
        if not (target.startswith(text) or text.startswith(target)):
            return t
    return len(pieces)


def _cache(out) -> dict:
    """The KV cache of a forward pass, as the keyword the next call takes (transformers >= 5.2x
    names it ``cache``, earlier releases ``past_key_values``)."""
    return {"cache": out["cache"]} if "cache" in out else {"past_key_values": out["past_key_values"]}


@torch.no_grad()
def greedy_decode(model, input_ids, n):
    out = model(input_ids=input_ids, use_cache=True)
    new = []
    for _ in range(n):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        new.append(nxt)
        out = model(input_ids=nxt, use_cache=True, **_cache(out))
    return torch.cat(new, 1)


# ----------------------------------------------------------------------------- wrong answers

def _zero_based(dense_ids, pruned_ids):                # counts steps from 0
    s = first_divergence_step(dense_ids, pruned_ids)
    return None if s is None else s - 1


def _ignores_length(dense_ids, pruned_ids):           # a text that ended early "agrees"
    for t in range(min(len(dense_ids), len(pruned_ids))):
        if dense_ids[t] != pruned_ids[t]:
            return t + 1
    return None


def _distinct_tokens(ids, n=2):                       # distinct-1, whatever n
    return len(set(ids)) / len(ids) if ids else float("nan")


def _distinct_over_tokens(ids, n=2):                  # divides by the number of tokens
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(ids) if ids else float("nan")


def _kl_not_accumulated(z, z_pruned, T=1.0):          # per-step KL only
    return accumulated_kl(z, z_pruned, T).diff(prepend=torch.zeros(1, dtype=torch.float64))


def _kl_reversed(z, z_pruned, T=1.0):                 # KL(p'||p): pruned first
    return accumulated_kl(z_pruned, z, T)


def _kl_no_temperature(z, z_pruned, T=1.0):
    return accumulated_kl(z, z_pruned, 1.0)


def _on_track_prefix_only(pieces, target):            # forgets that the text may run past the target
    text = ""
    for t, piece in enumerate(pieces):
        text += piece
        if not target.startswith(text):
            return t
    return len(pieces)


def _on_track_error_step(pieces, target):             # the step of the first error, not the steps before it
    n = steps_on_track(pieces, target)
    return n + 1 if n < len(pieces) else n


@torch.no_grad()
def _greedy_off_by_one(model, input_ids, n):          # feeds the prompt again instead of the new token
    ids = input_ids
    new = []
    for _ in range(n):
        nxt = model(input_ids=ids).logits[:, -2].argmax(-1, keepdim=True)
        new.append(nxt)
        ids = torch.cat([ids, nxt], 1)
    return torch.cat(new, 1)


@torch.no_grad()
def _greedy_sampled(model, input_ids, n):             # samples instead of taking the arg-max
    g = torch.Generator().manual_seed(0)
    ids = input_ids
    new = []
    for _ in range(n):
        p = torch.softmax(model(input_ids=ids).logits[:, -1], -1)
        nxt = torch.multinomial(p, 1, generator=g)
        new.append(nxt)
        ids = torch.cat([ids, nxt], 1)
    return torch.cat(new, 1)


WRONG = {
    "first_divergence_step": [_zero_based, _ignores_length],
    "distinct_n": [_distinct_tokens, _distinct_over_tokens],
    "accumulated_kl": [_kl_not_accumulated, _kl_reversed, _kl_no_temperature],
    "steps_on_track": [_on_track_prefix_only, _on_track_error_step],
    "greedy_decode": [_greedy_off_by_one, _greedy_sampled],
}
