# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: option_subspace
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# template_pdf: false
# tests:
#   files: true
#   ok_format: false

# %% tags=["parameters"]
MODEL = "smollm2-135m"   # the course model
N_FACTS = 8              # facts from helpers.tasks.load_facts() (the first N_FACTS)
METHOD = "drop-attn"     # the pruning to examine ...
N_DROP = 8               # ... and how many attention sublayers it drops
SEED = 0

# %% [markdown]
# # Assignment · Does your pruning keep the option subspace?
#
# Notebook 04 showed that a pruned model can keep its multiple-choice answers while its
# next-token distribution over the whole vocabulary moves a lot. In this assignment you measure
# that yourself, with two divergences you implement from their definitions.
#
# **Notation** (as in the course). For one prompt the dense model gives logits
# $z \in \mathbb{R}^V$ over the vocabulary, the pruned model $z'$. With temperature $T$,
# $p = \mathrm{softmax}(z / T)$ and $p' = \mathrm{softmax}(z' / T)$.
#
# * The full-vocabulary divergence is $\mathrm{KL}(p\,\|\,p') = \sum_{i=1}^{V} p_i \,(\log p_i - \log p'_i)$
#   (dense first).
# * A multiple-choice item has options whose first tokens form $S = (s_1, \dots, s_k)$. The
#   option subspace keeps only those logits and renormalises:
#   $p^S_j = e^{z_{s_j}/T} / \sum_{l=1}^{k} e^{z_{s_l}/T}$, and likewise $p'^S$ from $z'$. The
#   option-subspace divergence is $\mathrm{KL}(p^S\,\|\,p'^S)$.
#
# **What to hand in:** this notebook, run from top to bottom, with every `...` replaced.
# Questions 1–3 are graded automatically (9 points: public tests you can run with
# `grader.check("q1")` and hidden tests the grader adds); question 4 is read by a person (2 points).
#
# **Rules:** write the divergences yourself with `torch` (no `helpers.metrics` in questions 1 and
# 2; you may use it to check your work). **Runtime:** about a minute on a laptop CPU (pruning
# computes which sublayers matter least once; the course's result cache keeps it).

# %%
import numpy as np
import torch

import helpers
from helpers import tasks

helpers.seed_everything(SEED)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 (3 points).** Write `kl_full(z, z_pruned, T=1.0)`: the full-vocabulary
# $\mathrm{KL}(p\,\|\,p')$ of every row. `z` and `z_pruned` have shape `[..., V]` (one or more
# rows of logits); return a float64 tensor of shape `[...]`.
#
# It must be exact and numerically stable: logits of size 1000 must not overflow (work with
# log-probabilities: `torch.log_softmax`), and it must be KL of $p$ *from* $p'$ with the dense
# distribution first.

# %% [raw]
# # BEGIN SOLUTION

# %%
def kl_full(z, z_pruned, T=1.0):
    """KL(p || p') over the last dimension, p = softmax(z / T), p' = softmax(z_pruned / T)."""
    # BEGIN SOLUTION
    log_p = torch.log_softmax(z.double() / T, dim=-1)
    log_q = torch.log_softmax(z_pruned.double() / T, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_q1_shape_and_zero(kl_full):
    import torch
    z = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    d = kl_full(z, z)
    assert d is not None, "kl_full returned nothing: replace the `...`"
    assert tuple(d.shape) == (3,), f"one value per row expected, got shape {tuple(d.shape)}"
    assert torch.allclose(d.double(), torch.zeros(3, dtype=torch.float64), atol=1e-9), \
        f"KL(p || p) must be 0, got {d}"

test_q1_shape_and_zero(kl_full)

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q1_values_and_direction(kl_full):
    import torch
    from helpers import metrics
    g = torch.Generator().manual_seed(2)
    z = 3 * torch.randn(4, 200, generator=g, dtype=torch.float64)
    zp = z + torch.randn(4, 200, generator=g, dtype=torch.float64)
    for T in (1.0, 0.5, 2.0):
        got = kl_full(z, zp, T=T).double()
        assert torch.allclose(got, metrics.kl(z, zp, T), rtol=1e-6, atol=1e-9), \
            f"T={T}: got {got}, expected {metrics.kl(z, zp, T)} (KL(p || p'), dense first, p = softmax(z/T))"
    one = kl_full(z[0], zp[0]).double()
    assert one.shape == () and torch.allclose(one, metrics.kl(z[0], zp[0])), "a single row of logits"

test_q1_values_and_direction(kl_full)

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q1_stable_and_shift_invariant(kl_full):
    import torch
    from helpers import metrics
    g = torch.Generator().manual_seed(3)
    z = 1000 * torch.randn(2, 100, generator=g, dtype=torch.float64)
    zp = z + 5 * torch.randn(2, 100, generator=g, dtype=torch.float64)
    got = kl_full(z, zp).double()
    assert torch.isfinite(got).all(), f"large logits overflow: {got}"
    assert torch.allclose(got, metrics.kl(z, zp), rtol=1e-6, atol=1e-9)
    shifted = kl_full(z, zp + 7.0).double()
    assert torch.allclose(shifted, got, rtol=1e-6, atol=1e-9), "softmax ignores a common shift of the logits"

test_q1_stable_and_shift_invariant(kl_full)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# **Question 2 (3 points).** Write `kl_options(z, z_pruned, option_ids, T=1.0)`: the
# option-subspace $\mathrm{KL}(p^S\,\|\,p'^S)$. `z`, `z_pruned` have shape `[items, V]` and
# `option_ids` holds the option tokens of each item, shape `[items, k]` (a list of lists or a
# tensor); return a float64 tensor of shape `[items]`. Restrict both logit vectors to $S$ first,
# *then* take the softmax (that is the renormalisation). You may reuse your `kl_full`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def kl_options(z, z_pruned, option_ids, T=1.0):
    """KL(p^S || p'^S): both distributions restricted to the option tokens and renormalised."""
    # BEGIN SOLUTION
    idx = torch.as_tensor(option_ids, dtype=torch.long)
    return kl_full(z.gather(-1, idx), z_pruned.gather(-1, idx), T=T)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_q2_shape_and_zero(kl_options):
    import torch
    z = torch.randn(5, 40, generator=torch.Generator().manual_seed(4))
    ids = [[0, 1, 2, 3]] * 5
    d = kl_options(z, z, ids)
    assert d is not None, "kl_options returned nothing: replace the `...`"
    assert tuple(d.shape) == (5,), f"one value per item expected, got shape {tuple(d.shape)}"
    assert torch.allclose(d.double(), torch.zeros(5, dtype=torch.float64), atol=1e-9)

test_q2_shape_and_zero(kl_options)

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q2_values_per_item(kl_options):
    import torch
    from helpers import metrics
    g = torch.Generator().manual_seed(5)
    z = 2 * torch.randn(6, 300, generator=g, dtype=torch.float64)
    zp = z + torch.randn(6, 300, generator=g, dtype=torch.float64)
    ids = torch.stack([torch.randperm(300, generator=g)[:4] for _ in range(6)])
    want = metrics.kl(metrics.option_logits(z, ids), metrics.option_logits(zp, ids), 1.5)
    got = kl_options(z, zp, ids.tolist(), T=1.5).double()
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-9), \
        f"got {got}, expected {want}: restrict each item to its own options, renormalise, then KL(p^S || p'^S)"

test_q2_values_per_item(kl_options)

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 1
""" # END TEST CONFIG
def test_q2_reads_only_the_options(kl_options):
    import torch
    g = torch.Generator().manual_seed(6)
    z = torch.randn(3, 100, generator=g, dtype=torch.float64)
    zp = z + torch.randn(3, 100, generator=g, dtype=torch.float64)
    ids = torch.tensor([[3, 10, 20, 30]] * 3)
    base = kl_options(z, zp, ids).double()
    moved = zp.clone()
    moved[:, 50:] += 10 * torch.randn(3, 50, generator=g, dtype=torch.float64)   # off the options
    assert torch.allclose(kl_options(z, moved, ids).double(), base, rtol=1e-9, atol=1e-12), \
        "the option-subspace KL must not depend on logits outside S (renormalise over S only)"

test_q2_reads_only_the_options(kl_options)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## The real model
#
# The cell below loads the course model and the first `N_FACTS` facts, the option tokens of each
# fact (`option_ids`, one list of 4 token ids per fact) and the dense next-token logits after each
# prompt (`z`, shape `[N_FACTS, V]`).

# %%
facts = tasks.load_facts().select(range(N_FACTS))
model, tok = helpers.load_model(MODEL)
option_ids = tasks.option_ids(tok, facts)
z = tasks.next_token_logits(model, tok, facts)
print(f"{len(facts)} facts, logits {tuple(z.shape)}; first prompt: {facts[0]['prompt']!r}")

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# **Question 3 (3 points).** Prune the model with
# `helpers.pruned(model, METHOD, n=N_DROP, tokenizer=tok)` (a context manager: inside the `with`
# block the model is pruned, afterwards it is dense again), compute the pruned logits `z_pruned`
# with `tasks.next_token_logits(model, tok, facts)` *inside* the block, and report the medians
# over the facts (`float(np.median(...))`) of your two divergences at $T = 1$:
# `median_kl_full` and `median_kl_options`.

# %% [raw]
# # BEGIN SOLUTION

# %%
with helpers.pruned(model, METHOD, n=N_DROP, tokenizer=tok) as removed:
    z_pruned = tasks.next_token_logits(model, tok, facts)  # SOLUTION
median_kl_full = float(np.median(kl_full(z, z_pruned).numpy()))  # SOLUTION
median_kl_options = float(np.median(kl_options(z, z_pruned, option_ids).numpy()))  # SOLUTION
print(removed)
print("median KL over the vocabulary:", median_kl_full, "| over the options:", median_kl_options)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_q3_reported(median_kl_full, median_kl_options):
    assert isinstance(median_kl_full, float) and isinstance(median_kl_options, float), \
        "report both medians as Python floats: float(np.median(...))"
    assert median_kl_full >= 0 and median_kl_options >= 0, "a KL divergence is never negative"
    assert median_kl_full > 0, "the pruned logits equal the dense ones: compute z_pruned inside the with block"

test_q3_reported(median_kl_full, median_kl_options)

# %%
""" # BEGIN TEST CONFIG
hidden: true
points: 2
""" # END TEST CONFIG
def test_q3_matches_the_reference(median_kl_full, median_kl_options, model, tok, facts, METHOD, N_DROP):
    import math
    from helpers import tasks
    assert isinstance(median_kl_full, float) and isinstance(median_kl_options, float), "report both medians"
    ref = tasks.subspace_vs_full(model, tok, facts, METHOD, n=N_DROP)
    for name, got, want in (("median_kl_full", median_kl_full, float(ref["kl_full"].median())),
                            ("median_kl_options", median_kl_options, float(ref["kl_options"].median()))):
        assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-7), f"{name}: got {got:.6g}, expected {want:.6g}"

test_q3_matches_the_reference(median_kl_full, median_kl_options, model, tok, facts, METHOD, N_DROP)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# manual: true
# points: 2

# %% [markdown]
# **Question 4 (2 points, read by a person).** Compare your two medians. In three to five
# sentences: which is smaller, by roughly what factor, and why (what does renormalising over four
# tokens remove)? What does that predict for the pruned model's multiple-choice accuracy, and for
# its free generation? Name one thing in your numbers that would make you doubt the prediction.

# %% [raw]
# # BEGIN SOLUTION

# %% [markdown]
# **Solution (a good answer says):** the option-subspace KL is much smaller (on the default model
# with 8 attention sublayers dropped, about 0.04 against 0.3 over the vocabulary at the median, a
# factor of about 8). Renormalising over $S$ removes every change of probability mass *between* the
# options and the rest of the vocabulary, and a common shift of the four option logits; what is
# left is only how the four options move relative to each other, which pruning disturbs little.
# Multiple-choice accuracy reads only that subspace, so it should stay close to the dense one;
# free generation reads the whole distribution at every step (and feeds each token back), so it
# should degrade. Doubts: only 8 facts (the median of 8 is noisy), and a median hides the items
# whose option KL is large (the maximum is worth reporting), where the answer may flip.

# %% [raw]
# # END SOLUTION

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Before you hand it in
#
# Run every cell from the top (Kernel → Restart and run all), then the cell below: it runs the
# public tests of every question. Hidden tests check more cases when the notebook is graded.
