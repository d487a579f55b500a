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

# %% [markdown]
# # 03 · Softmax amplification: why $p$ moves when $h$ and $z$ barely do
#
# Notebook 02 showed the pattern of He et al. (2026), *Demystifying When Pruning Works via
# Representation Hierarchies*: after pruning, the hidden states $h$ and the logits $z$ of a model
# stay close to the dense ones (cosine similarity near 1), while the next-token distribution $p$
# moves more. This notebook explains that with three short second-order calculations, the
# paper's three approximation theorems, and checks each one on the real model.
#
# **What you will learn**
# - to derive the three approximations (Taylor expansions to second order) and to see why their
#   first-order terms vanish;
# - to check them numerically, estimate against measurement, on perturbations we control and on
#   real pruning (Wanda, dropped attention and MLP sublayers), and to see where they break;
# - why $p$ can move more than $z$: a *gain* of softmax that grows like $1/T^2$, times how the
#   perturbation lines up with the few tokens that carry the probability;
# - why greedy decoding ($T \to 0$) sits at the sharp end of that gain;
# - which tokens carry the change;
# - to play with all of it in an interactive explorer.
#
# **Prerequisites:** notebooks 00 ($h$, $z$, $p$, temperature), 01 (pruning methods) and 02
# (`helpers.trace`). Maths: Taylor series, mean and variance.
#
# **Runtime:** about 2 minutes on a 2-core laptop CPU (three Wanda runs take most of it).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from tqdm.auto import tqdm

import helpers
from helpers import metrics as M
from helpers import perturb as P

helpers.plots.set_theme()
helpers.seed_everything(0)
t_start = time.perf_counter()

model, tokenizer = helpers.load_model()
L = helpers.arch(model).n_layers
SITE = f"blocks.{L - 1}.hook_resid_post"   # h: the residual stream after the last layer
print(f"{type(model).__name__}, {L} layers; h is read at {SITE!r}")

# %% [markdown]
# ## 1. Three second-order approximations
#
# **Notation.** The vocabulary has $V$ tokens, indexed by $i$. The dense model's logits are
# $z \in \mathbb{R}^V$; the pruned model's are $z' = z + \Delta z$. With a temperature $T > 0$,
# $p = \mathrm{softmax}(z/T)$, i.e. $p_i = e^{z_i/T} / \sum_j e^{z_j/T}$, and $p' = \mathrm{softmax}(z'/T)$.
# We write $\delta = \Delta z / T$ for the logit change in units of the temperature. For weights
# $w$ ($w_i \ge 0$, $\sum_i w_i = 1$): $\mathbb{E}_w[v] = \sum_i w_i v_i$ and
# $\mathrm{Var}_w(v) = \sum_i w_i (v_i - \mathbb{E}_w[v])^2$. Two weightings appear: $p$ itself,
# and $r_i = p_i^2 / \|p\|^2$ (probability squared, renormalised), which leans even harder on the
# top tokens. For a vector $x$ in any space ($h$, $z$ or $p$) and its perturbed version
# $x' = x + \Delta x$, the part of $\Delta x$ along $x$ is
# $\Delta x_\parallel = \frac{\langle \Delta x, x\rangle}{\|x\|^2} x$ and the rest is
# $\Delta x_\perp = \Delta x - \Delta x_\parallel$. KL is always $\mathrm{KL}(p \,\|\, p')$, dense first.
#
# **One identity does most of the work.** Divide numerator and denominator of $p'_i$ by
# $\sum_j e^{z_j/T}$:
#
# $$p'_i = \frac{e^{(z_i + \Delta z_i)/T}}{\sum_j e^{(z_j + \Delta z_j)/T}}
#        = \frac{p_i\, e^{\delta_i}}{\sum_j p_j e^{\delta_j}}
#        = \frac{p_i\, e^{\delta_i}}{\mathbb{E}_p[e^{\delta}]}. \tag{1}$$
#
# Pruning *reweights* every token by $e^{\delta_i}$ and renormalises. A constant added to every
# $\delta_i$ cancels: softmax only sees differences between logit changes. The tool to expand (1)
# is the cumulant generating function of $\delta$ under weights $w$,
#
# $$K_w(t) = \log \mathbb{E}_w\!\left[e^{t\delta}\right]
#          = t\,\mu_w + \frac{t^2}{2}\sigma_w^2 + \frac{t^3}{6}\kappa_w + O(\delta^4),$$
#
# with $\mu_w = \mathbb{E}_w[\delta]$, $\sigma_w^2 = \mathrm{Var}_w(\delta)$ and
# $\kappa_w = \mathbb{E}_w[(\delta - \mu_w)^3]$ (expand $e^{t\delta}$, then $\log(1 + u)$).
#
# ### Theorem 3: KL
#
# By (1), $\log(p_i / p'_i) = -\delta_i + \log \mathbb{E}_p[e^\delta]$, so, exactly,
#
# $$\mathrm{KL}(p\,\|\,p') = \sum_i p_i \log\frac{p_i}{p'_i} = K_p(1) - \mu_p
#   = \frac{\sigma_p^2}{2} + \frac{\kappa_p}{6} + O(\delta^4)
#   \;\approx\; \frac{\mathrm{Var}_{i \sim p}(\Delta z_i)}{2T^2}.$$
#
# The **first-order term** is $\mu_p - \mu_p = 0$. It has to vanish: $\mathrm{KL}(p\|q) \ge 0$ with
# equality at $q = p$, so $p' = p$ is a minimum and the slope there is zero.
#
# ### Theorem 2: cosine in probability space
#
# A cosine ignores lengths, so the normaliser in (1) drops out:
#
# $$\cos(p, p') = \frac{\sum_i p_i^2 e^{\delta_i}}{\|p\|\,\sqrt{\sum_i p_i^2 e^{2\delta_i}}}
#   = \frac{\mathbb{E}_r[e^{\delta}]}{\sqrt{\mathbb{E}_r[e^{2\delta}]}}, \qquad r_i = \frac{p_i^2}{\|p\|^2}.$$
#
# Taking logs, $\log\cos = K_r(1) - \tfrac12 K_r(2) = -\tfrac{\sigma_r^2}{2} - \tfrac{\kappa_r}{2} + O(\delta^4)$
# (the $\mu_r$ terms cancel: that is the first-order term vanishing), so
#
# $$1 - \cos(p, p') = \frac{\sigma_r^2}{2} + \frac{\kappa_r}{2} + O(\delta^4)
#   \;\approx\; \frac{\mathrm{Var}_{r}(\Delta z)}{2T^2}.$$
#
# ### Theorem 1: cosine in any space
#
# Write $\Delta x = a\,x + \Delta x_\perp$ with $a = \langle \Delta x, x\rangle / \|x\|^2$. Since
# $\Delta x_\perp \perp x$,
#
# $$\cos(x, x') = \frac{(1 + a)\|x\|^2}{\|x\|\sqrt{(1+a)^2\|x\|^2 + \|\Delta x_\perp\|^2}}
#   = (1 + \varepsilon)^{-1/2}, \qquad \varepsilon = \frac{\|\Delta x_\perp\|^2}{(1+a)^2\|x\|^2}$$
#
# (for $1 + a > 0$), so $1 - \cos = \tfrac{\varepsilon}{2} - \tfrac{3\varepsilon^2}{8} + \dots
# \approx \|\Delta x_\perp\|^2 / (2\|x\|^2)$ when $\|\Delta x\| \ll \|x\|$. The parallel part only
# stretches $x$ and costs nothing; there is no first-order term because $\cos(x, \cdot)$ is maximal
# (equal to 1) at $x' = x$.
#
# ### Assumptions, and what breaks them
#
# * Theorem 1 needs $\|\Delta x\| \ll \|x\|$. It drops the factor $(1+a)^{-2} \approx 1 - 2a$,
#   so a change of the *length* of $x$ enters its error at first order (section 3 meets this).
# * Theorems 2 and 3 replace $e^{\delta_i - \mu}$ by its Taylor polynomial, so they need
#   $|\delta_i - \mu|$ small on every token that carries probability, **before or after** the
#   perturbation. One token with a big jump (a new arg-max at low $T$) breaks them. We measure
#   how far the expansion is stretched by the *spread*
#   $m = \max_{i \in S} |\Delta z_i - \mathbb{E}_p[\Delta z]| / T$ over the set $S$ of the 50 most
#   probable tokens of $p$ and of $p'$ (`helpers.perturb.spread`).
# * The next terms are $\kappa_p/6$ for KL but $\kappa_r/2$ for the cosine: relative errors of
#   about $\kappa/(3\sigma^2)$ against $\kappa/\sigma^2$. **The cosine estimate breaks about three
#   times sooner than the KL estimate.**
#
# The estimates live in `helpers.metrics`: `second_order_cos(x, x_pruned)`,
# `second_order_cos_p(z, z_pruned, T)` and `second_order_kl(z, z_pruned, T)`, beside the exact
# `one_minus_cos` and `kl`. Before any approximation, a quick check that the *exact* steps above
# are right, on one real prompt and a random logit change: $\mathrm{KL} = K_p(1) - \mu_p$ and
# $\cos = \mathbb{E}_r[e^\delta] / \sqrt{\mathbb{E}_r[e^{2\delta}]}$ must hold to rounding.

# %%
enc = tokenizer("The capital of France is", return_tensors="pt")
with torch.no_grad():
    z1 = model(**enc).logits[0, -1].double()
T = 1.0
dz1 = 0.5 * torch.randn(z1.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
p1 = torch.softmax(z1 / T, -1)
r1 = p1**2 / (p1**2).sum()
delta = dz1 / T

kl_exact = M.kl(z1, z1 + dz1, T).item()
kl_identity = (torch.log((p1 * delta.exp()).sum()) - (p1 * delta).sum()).item()      # K_p(1) - mu_p
cos_exact = 1 - M.one_minus_cos(p1, M.log_softmax(z1 + dz1, T).exp()).item()
cos_identity = ((r1 * delta.exp()).sum() / (r1 * (2 * delta).exp()).sum().sqrt()).item()
print(f"KL  = {kl_exact:.10f}   K_p(1) - mu_p          = {kl_identity:.10f}")
print(f"cos = {cos_exact:.10f}   E_r[e^d]/sqrt(E_r[e^2d]) = {cos_identity:.10f}")

# %% [markdown]
# **Self-check.** The two exact identities hold to rounding error.

# %%
assert abs(kl_exact - kl_identity) < 1e-9, f"KL should equal K_p(1) - mu_p: {kl_exact} vs {kl_identity}"
assert abs(cos_exact - cos_identity) < 1e-9, f"cos(p,p') should equal E_r[e^d]/sqrt(E_r[e^2d]): {cos_exact} vs {cos_identity}"
print("self-check passed: the exact identities behind Theorems 2 and 3 hold")

# %% [markdown]
# ## 2. Controlled perturbations on real logits
#
# We take the dense logits $z$ at the last position of 32 prompts of our own, from confident
# completions ("Romeo and" → " Juliet") to open ones ("After the rain stopped, the children"),
# so that $p$ ranges from flat to peaked. Then we add perturbations whose shape and size we
# choose (`helpers.perturb`), with size $s$ from 0.01 to 3 logits:
#
# * **isotropic**: $\Delta z_i \sim \mathcal{N}(0, s^2)$ independently for every token;
# * **top-10 noise**: the same noise on the 10 largest logits only;
# * **top-1 shift**: $\Delta z = s\, e_j$ for the arg-max token $j$ (closed form:
#   $\mathrm{KL} = \log(1 - p_j + p_j e^{s/T}) - p_j s/T$).
#
# `helpers.perturb.measure` returns, per prompt, each exact distance beside its estimate
# (`kl`/`kl_est`, `one_minus_cos_p`/`one_minus_cos_p_est`, `one_minus_cos_z`/`one_minus_cos_z_est`), the spread $m$ and the dense top-1
# probability `p_max`.

# %%
PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of 100 degrees",
    "The first president of the United States was George",
    "One, two, three, four,",
    "The opposite of hot is",
    "Monday, Tuesday, Wednesday,",
    "The chemical symbol for gold is",
    "Shakespeare wrote the play Romeo and",
    "The largest planet in our solar system is",
    "A triangle has three sides, and a square has",
    "She opened the door and saw",
    "My favourite thing to do on a rainy afternoon is",
    "The best way to learn a new language is",
    "Once upon a time, in a small village,",
    "He looked at the menu and decided to order",
    "The meeting was postponed because",
    "In the middle of the forest there was",
    "To make a good cup of tea, you should first",
    "The most important quality in a friend is",
    "After the rain stopped, the children",
    "The scientist carefully placed the sample under the",
    "Photosynthesis is the process by which plants",
    "The train was late again, so we",
    "If you want to stay healthy, you should",
    "The old lighthouse keeper climbed the stairs and",
    "Dear Sir or Madam, I am writing to",
    "The recipe calls for two cups of flour and",
    "The stock market fell sharply today after",
    "Q: What is two plus two?\nA:",
    "The sun rises in the east and sets in the",
    "Translate to French: 'cat' ->",
    "The heart pumps blood through the",
]
dense_prompts = helpers.trace(model, tokenizer, PROMPTS, sites=SITE, positions=-1)
h_prompts = dense_prompts.h(SITE)[:, 0]             # [32, d]   last real token of each prompt
z_prompts = dense_prompts.output_logits()[:, 0]     # [32, V]   the model's own logits there
p_prompts = M.log_softmax(z_prompts).exp()
overview = pd.DataFrame({
    "prompt": PROMPTS,
    "top token": [tokenizer.decode([int(i)]) for i in p_prompts.argmax(-1)],
    "top-1 p": p_prompts.max(-1).values.numpy().round(3),
}).sort_values("top-1 p")
display(pd.concat([overview.head(3), overview.tail(3)]))

# %%
SIZES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
gen = torch.Generator().manual_seed(0)
KINDS = {
    "isotropic": lambda z, s: P.isotropic(z, s, generator=gen),
    "top-10 noise": lambda z, s: P.top_k_noise(z, s, k=10, generator=gen),
    "top-1 shift": lambda z, s: P.single_token(z, s),
}
ctrl = pd.concat([P.measure(z_prompts, z_prompts + make(z_prompts, s), 1.0, kind=kind, size=s)
                  for kind, make in tqdm(KINDS.items(), desc="controlled") for s in SIZES],
                 ignore_index=True)
ctrl["p"] = np.where(ctrl["p_max"] > 0.5, "peaked (top-1 p > 0.5)", "flat (top-1 p ≤ 0.5)")
ctrl["s"] = ctrl["size"].map("{:g}".format)          # size as a label, for colours
for q in ("kl", "one_minus_cos_p", "one_minus_cos_z"):
    ctrl[f"{q}_err"] = (ctrl[f"{q}_est"] / ctrl[q] - 1).abs()      # relative error of the estimate

fig, axes = plt.subplots(3, 3, figsize=(13, 11))
for col, kind in enumerate(KINDS):
    P.plot_estimates(ctrl[ctrl["kind"] == kind], ("kl", "one_minus_cos_p", "one_minus_cos_z"), hue="s",
                     palette="viridis", axes=axes[:, col], hue_order=[f"{s:g}" for s in SIZES],
                     legend=(col == len(KINDS) - 1))
    axes[0, col].set_title(kind)
fig.suptitle("Second-order estimate vs measured, 32 prompts × 6 sizes (colour: size s in logits)", y=1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# Every point sits on the line $y = x$ while the perturbation is small, over many orders of
# magnitude. Theorem 1 for $z$ (bottom row) holds nearly everywhere here: even $s = 3$ is small against
# $\|z\|$, a vector of 49,152 logits. The top-1 shift barely moves the cosine of $z$ at all: one
# coordinate out of 49,152.
#
# **Self-check.** For small perturbations ($s \le 0.1$ logits) every estimate is within 10% of
# the measured value (median over the 32 prompts), for each kind of perturbation.

# %%
small = ctrl[ctrl["size"] <= 0.1]
med_err = small.groupby(["kind", "size"])[["kl_err", "one_minus_cos_p_err", "one_minus_cos_z_err"]].median()
display(med_err.style.format("{:.2%}"))
assert (med_err < 0.10).all().all(), (
    f"for small perturbations the estimates should be within 10% of measured (median over prompts):\n{med_err}")
print("self-check passed: small perturbations, all three estimates within 10% (median)")

# %% [markdown]
# ### Where it breaks
#
# Plot the relative error of each estimate against the spread $m$ (section 1). Below $m \approx 0.5$
# the KL estimate stays within about 10%; beyond, it depends on the *shape* of the perturbation.
# The cosine estimate drifts first, as the third-order terms predicted.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, q, title in zip(axes, ("kl_err", "one_minus_cos_p_err"), ("KL estimate (Thm 3)", "1 − cos p estimate (Thm 2)")):
    sns.scatterplot(data=ctrl, x="spread", y=ctrl[q].clip(lower=1e-6), hue="kind", style="p",
                    s=22, alpha=0.75, ax=ax, legend=(ax is axes[-1]))
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.axhline(0.10, color="black", ls="--", lw=1)
    ax.set(xscale="log", yscale="log", ylim=(1e-4, 200), xlabel="spread m = max |Δz_i − E_p Δz| / T (top tokens)",
           ylabel="relative error |estimate / measured − 1|", title=title)
sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
plt.show()

large = ctrl[ctrl["size"] >= 1.0]
flat_vs_peaked = large.groupby(["kind", "size", "p"])["kl_err"].median().unstack()
display(flat_vs_peaked.style.format("{:.1%}").set_caption("median relative error of the KL estimate, large sizes"))

# %% [markdown]
# Two regimes. For a **flat** $p$ the variance is an average over many tokens, and Gaussian noise
# has no third cumulant ($\kappa \approx 0$), so the KL estimate survives even large isotropic
# noise. For a **peaked** $p$ only a handful of tokens count, their individual jumps matter, and
# the estimate breaks earlier. The top-1 shift is the worst case: one big jump on the token that
# holds the mass.
#
# **Self-check.** (a) Where the spread is at most 0.5, the KL estimate is within 15% for every
# point and within 10% for 95% of them; (b) where the spread exceeds 2, the estimates are off by
# more than 20% (median) — they really do break; (c) under large isotropic noise, flat $p$ keeps
# the KL estimate closer than peaked $p$.

# %%
inside, outside = ctrl[ctrl["spread"] <= 0.5], ctrl[ctrl["spread"] > 2]
print(f"spread <= 0.5: {len(inside)} points, KL error max {inside.kl_err.max():.1%}, "
      f"95th percentile {inside.kl_err.quantile(0.95):.1%}; cosine error 90th percentile {inside.one_minus_cos_p_err.quantile(0.9):.1%}")
print(f"spread > 2:    {len(outside)} points, median KL error {outside.kl_err.median():.1%}, "
      f"median cosine error {outside.one_minus_cos_p_err.median():.1%}")
assert inside.kl_err.max() < 0.15 and inside.kl_err.quantile(0.95) < 0.10, "inside spread <= 0.5 the KL estimate should hold"
assert outside.kl_err.median() > 0.2 and outside.one_minus_cos_p_err.median() > 0.2, "beyond spread 2 the estimates should break"
iso = flat_vs_peaked.loc["isotropic"]
assert (iso.iloc[:, 0] < iso.iloc[:, 1]).all(), f"flat p should hold up better under isotropic noise:\n{iso}"
print("self-check passed: the estimates hold for small spread and break for large spread")

# %% [markdown]
# ## 3. Real pruning perturbations
#
# Now $\Delta z$ comes from pruning. Pruning matters most for generation, and generation is
# next-token prediction inside running text, so we measure there: the held-out paragraphs that
# ship with the course (`helpers.load_heldout()`, never used for calibration), 6 of them cut to 48
# tokens, at 20 positions each — 120 next-token distributions, most of them much flatter than
# our hand-written prompts.
#
# The perturbations (each computed **once**, then reused by every section below):
#
# * **Wanda** (Sun et al., 2023) at 30%, 50% and 60% unstructured sparsity. To keep this notebook
#   fast we calibrate on 4 sequences of 128 tokens (a quarter of the default of notebook 01; Wanda
#   is known to need few calibration samples).
# * **Dropping** the $n = 1, 4, 8, 12$ least important attention or MLP sublayers (LLM-Drop: He et
#   al., 2024, "What Matters in Transformers? Not All Attention Is Needed"). We score importance
#   once with `helpers.sublayer_importance` (on 8 calibration sequences) and pass the chosen
#   `layers=`; that is the ranking `n=` uses inside `helpers.pruned`, without scoring eight times.

# %%
texts = helpers.load_heldout()[:6]
text_batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=48)
POSITIONS = list(range(8, 48, 2))         # 20 positions per text


def final_state(batch, positions):
    """h and the model's logits after the last layer at the chosen positions, flattened to rows."""
    tr = helpers.trace(model, tokenizer, batch, sites=SITE, positions=positions)
    return tr.h(SITE).flatten(0, 1), tr.output_logits().flatten(0, 1)


h_text, z_text = final_state(text_batch, POSITIONS)
importance = helpers.sublayer_importance(model, tokenizer, n_samples=8)
order = {sub: importance[importance["sublayer"] == sub].sort_values(["importance", "layer"], kind="stable")
         ["layer"].tolist() for sub in ("attn", "mlp")}
print(f"{len(z_text)} next-token positions; least important attention layers: {order['attn'][:8]}")

CONFIGS = {f"Wanda {int(100 * s)}%": ("wanda", dict(sparsity=s, n_samples=4)) for s in (0.3, 0.5, 0.6)}
for sub in ("attn", "mlp"):
    for n in (1, 4, 8, 12):
        CONFIGS[f"drop-{sub} {n}"] = (f"drop-{sub}", dict(layers=order[sub][:n]))

H, Z = {}, {}
for name, (method, options) in tqdm(CONFIGS.items(), desc="pruning"):
    with helpers.pruned(model, method, **options):
        H[name], Z[name] = final_state(text_batch, POSITIONS)
        if name == "Wanda 50%":     # also on the 32 prompts, for the explorer of section 6
            tr = helpers.trace(model, tokenizer, PROMPTS, sites=SITE, positions=-1)
            h_prompts_w50 = tr.h(SITE)[:, 0]

real = pd.concat([P.measure(z_text, Z[name], 1.0, h=h_text, h_pruned=H[name], config=name, method=method)
                  for name, (method, _) in CONFIGS.items()], ignore_index=True)
for q in ("kl", "one_minus_cos_p", "one_minus_cos_z", "one_minus_cos_h"):
    real[f"{q}_err"] = (real[f"{q}_est"] / real[q] - 1).abs()
summary = real.groupby("config", sort=False).agg(
    KL=("kl", "median"), KL_est=("kl_est", "median"), KL_err=("kl_err", "median"),
    one_minus_cos_p_err=("one_minus_cos_p_err", "median"), one_minus_cos_z_err=("one_minus_cos_z_err", "median"), one_minus_cos_h_err=("one_minus_cos_h_err", "median"),
    spread=("spread", "median"), greedy_kept=("top1", "mean"))
display(summary.style.format("{:.3f}").format("{:.1%}", subset=["KL_err", "one_minus_cos_p_err", "one_minus_cos_z_err", "one_minus_cos_h_err", "greedy_kept"]))

# %%
fig, axes = plt.subplots(1, 4, figsize=(17, 4))
# one colour family per method, darker = stronger pruning
CONFIG_COLORS = {}
for method in ("wanda", "drop-attn", "drop-mlp"):
    names = [n for n, (m, _) in CONFIGS.items() if m == method]
    cmap = {"wanda": "Greens", "drop-attn": "Oranges", "drop-mlp": "Reds"}[method]
    shades = sns.color_palette(cmap, len(names) + 2)[2:]
    CONFIG_COLORS.update(zip(names, shades))
P.plot_estimates(real, ("kl", "one_minus_cos_p", "one_minus_cos_z", "one_minus_cos_h"), hue="config", axes=axes,
                 palette=CONFIG_COLORS, s=12, alpha=0.7)
fig.suptitle(f"Real pruning perturbations: estimate vs measured ({len(z_text)} positions × {len(CONFIGS)} configurations)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The same picture as with controlled noise: the points hug $y = x$ while the perturbation is
# small and spread out as it grows (for KL, the large ones fall below the line: the estimate
# underestimates). Three details are worth a closer look.
#
# * **KL (Theorem 3) is the most robust.** Real perturbations have a median spread above 0.5 at
#   $T = 1$, yet the KL estimate is close for most of them: the rule of section 2 is sufficient,
#   not necessary, and a real $\Delta z$ on the top tokens looks more like many small, roughly
#   symmetric changes than like one big jump.
# * **The cosine of $p$ (Theorem 2) is unbiased but noisy:** its median ratio to the measurement
#   stays near 1 for the small perturbations, while single positions scatter by tens of percent —
#   the factor-3 sensitivity of section 1 at work.
# * **Theorem 1 in $z$ misses a length change.** The exact form of section 1 has $(1+a)^2$ in the
#   denominator, $a = \langle \Delta x, x\rangle / \|x\|^2$; the estimate drops it, an error of
#   about $-2a$, *first* order in the parallel part. Pruning changes the length of $z$ by a few
#   percent, so the plain estimate is off by about twice that, and putting the factor back fixes it.
#
# **Self-check.** For the real perturbations that are small (median estimated KL at most 0.1
# nats), median over the 120 positions: (a) the KL estimate (Theorem 3) and Theorem 1 in $h$ are
# within 10% of the measured value; (b) Theorem 1 in $z$ is within 10% once the length factor
# $(1+a)^2$ is put back; (c) the Theorem-2 estimate for $p$ is unbiased: its median ratio to the
# measured $1 - \cos(p, p')$ is within 10% of 1.

# %%
a_z = {n: (M.par_perp(z_text, Z[n])[0] * z_text).sum(-1) / z_text.double().pow(2).sum(-1) for n in CONFIGS}
real["a_z"] = np.concatenate([a_z[n].numpy() for n in CONFIGS])          # length change of z along z
real["one_minus_cos_z_err_len"] = (real["one_minus_cos_z_est"] / (1 + real["a_z"]) ** 2 / real["one_minus_cos_z"] - 1).abs()
real["one_minus_cos_p_ratio"] = real["one_minus_cos_p_est"] / real["one_minus_cos_p"]
checks = real.groupby("config", sort=False).agg(
    KL_est=("kl_est", "median"), KL_err=("kl_err", "median"), one_minus_cos_h_err=("one_minus_cos_h_err", "median"),
    one_minus_cos_z_err=("one_minus_cos_z_err", "median"), a_z=("a_z", "median"), one_minus_cos_z_err_with_length=("one_minus_cos_z_err_len", "median"),
    one_minus_cos_p_ratio=("one_minus_cos_p_ratio", "median"), one_minus_cos_p_err=("one_minus_cos_p_err", "median"))
small_real = checks[checks["KL_est"] <= 0.1]
display(small_real.style.format("{:.3f}"))
assert len(small_real) >= 2, "expected at least two small real perturbations (e.g. drop-attn 1, Wanda 30%)"
assert (small_real[["KL_err", "one_minus_cos_h_err", "one_minus_cos_z_err_with_length"]] < 0.10).all().all(), (
    f"small real perturbations: KL, h and z (with length) estimates should be within 10% (median):\n{small_real}")
assert ((small_real["one_minus_cos_p_ratio"] - 1).abs() < 0.10).all(), f"Theorem 2 should be unbiased:\n{small_real}"
print("self-check passed: on small real perturbations the three theorems hold (KL, h, z to 10%; p unbiased)")

# %% [markdown]
# ## 4. Amplification: $h$, $z$ and $p$ side by side
#
# For every perturbation and position, $1 - \cos$ in the three spaces ($h$ after the last layer,
# $z$ the logits, $p$ at $T = 1$).

# %%
long = real.melt(id_vars=["config", "row"], value_vars=["one_minus_cos_h", "one_minus_cos_z", "one_minus_cos_p"],
                 var_name="space", value_name="1 − cos")
long["space"] = long["space"].str[-1]
fig, ax = plt.subplots(figsize=(13, 4.2))
sns.boxplot(data=long, x="config", y=long["1 − cos"].clip(lower=1e-6), hue="space",
            palette=helpers.plots.SPACE_COLORS, fliersize=1.5, ax=ax)
ax.set(yscale="log", xlabel="", ylabel="1 − cos (dense vs pruned)",
       title=f"The same perturbations seen in h, z and p (T = 1, {len(z_text)} positions each)")
ax.tick_params(axis="x", rotation=30)
plt.show()

def dz(name):
    """Δz = z' − z for one perturbation, float64, [positions, V] (recomputed: cheap, saves memory)."""
    return Z[name].double() - z_text.double()


amp = pd.DataFrame({
    "median 1−cos h": real.groupby("config", sort=False)["one_minus_cos_h"].median(),
    "median 1−cos z": real.groupby("config", sort=False)["one_minus_cos_z"].median(),
    "median 1−cos p": real.groupby("config", sort=False)["one_minus_cos_p"].median(),
    "share p > z": real.assign(pz=real["one_minus_cos_p"] > real["one_minus_cos_z"]).groupby("config", sort=False)["pz"].mean(),
    "share p > h": real.assign(ph=real["one_minus_cos_p"] > real["one_minus_cos_h"]).groupby("config", sort=False)["ph"].mean(),
    # how much of ||Δz||² is one uniform shift of all logits, (mean Δz)² / mean(Δz²): softmax ignores it
    "uniform-shift share": pd.Series({n: float((dz(n).mean(-1) ** 2 / dz(n).pow(2).mean(-1)).median()) for n in CONFIGS}),
})
display(amp.style.format("{:.3f}").format("{:.0%}", subset=["share p > z", "share p > h", "uniform-shift share"]))

# %% [markdown]
# At $T = 1$, $p$ moves more than $z$ at most positions and for most perturbations, and more
# than $h$ too, but on this small model not "by far" everywhere. Two things hold $p$ back, and
# both follow from section 1:
#
# * **$z$ counts a change softmax cannot see.** A uniform shift of all logits moves $z$ but not
#   $p$ (identity (1)). Where $p$ moved *less* than $z$, a large part of $\|\Delta z\|^2$ is exactly
#   such a shift (last column) — dropping attention sublayers does this a lot.
# * **The gain is large, the alignment small.** Dividing Theorem 2 by Theorem 1 in $z$,
#
#   $$\frac{1 - \cos(p,p')}{1 - \cos(z,z')} \approx
#     \underbrace{\frac{\|z\|^2 / V}{T^2}}_{\text{gain } G} \times
#     \underbrace{\frac{\mathrm{Var}_r(\Delta z)}{\|\Delta z_\perp\|^2 / V}}_{\text{alignment } B}.$$
#
#   The gain $G$ is the mean squared logit over $T^2$: how much *could* softmax amplify. The
#   alignment $B$ compares the change among the top tokens (the weights $r$ sit on one or two
#   tokens) with the change of an average logit.

# %%
V = z_text.shape[-1]
gain = (z_text.double().pow(2).sum(-1) / V) / 1.0**2                        # T = 1
r_w = torch.softmax(2 * M.log_softmax(z_text), -1)
align = pd.Series({n: float((M.weighted_var(dz(n), r_w) / (M.par_perp(z_text, Z[n])[1].pow(2).sum(-1) / V)).median())
                   for n in CONFIGS})
amp["alignment B"] = align
amp["G × B"] = float(gain.median()) * align
amp["measured ratio"] = (real["one_minus_cos_p"] / real["one_minus_cos_z"]).groupby(real["config"], sort=False).median()
print(f"gain G at T = 1: median {gain.median():.1f} (the mean squared logit)")
display(amp[["alignment B", "G × B", "measured ratio"]].style.format("{:.3f}"))

# %% [markdown]
# So softmax offers a gain of several tens at $T = 1$ (printed above), but pruning changes the
# logits of the top tokens *relative to each other* much less than it changes an average logit
# ($B \ll 1$), and the product, a few units, is close to the measured ratio for the smaller
# perturbations (for the large ones Theorem 2 itself no longer holds). The gain is the part that
# the temperature controls: $G \propto 1/T^2$.
#
# **Self-check.** (a) Over all real perturbations, $1 - \cos$ in $p$ exceeds $1 - \cos$ in $z$
# at most positions, and also within each family (Wanda, drop-attn, drop-mlp); (b) wherever a
# configuration breaks that majority, a uniform logit shift makes up most of its $\|\Delta z\|^2$;
# (c) the gain is large ($G > 10$) and the alignment small ($B < 1$) for every perturbation;
# (d) $p$ also moves more than $h$ at most positions.

# %%
pz = real.assign(pz=real["one_minus_cos_p"] > real["one_minus_cos_z"])
by_family = pz.groupby("method")["pz"].mean()
print(f"share of positions with 1−cos p > 1−cos z: all {pz['pz'].mean():.0%}; "
      + ", ".join(f"{k} {v:.0%}" for k, v in by_family.items()))
assert pz["pz"].mean() > 0.5 and (by_family > 0.5).all(), f"p should move more than z at most positions:\n{by_family}"
share_ph = (real["one_minus_cos_p"] > real["one_minus_cos_h"]).mean()
print(f"share of positions with 1−cos p > 1−cos h: {share_ph:.0%}")
assert share_ph > 0.5, f"p should move more than h at most positions ({share_ph:.0%})"
exceptions = amp[amp["share p > z"] <= 0.5]
print("configurations where p moves less than z at most positions:", list(exceptions.index))
assert (exceptions["uniform-shift share"] > 0.5).all(), f"exceptions should be dominated by a uniform shift:\n{exceptions}"
assert gain.median() > 10 and (align < 1).all(), f"gain {gain.median():.1f}, alignment {align.max():.3f}"
print("self-check passed: p moves more than z at most positions; exceptions are uniform logit shifts")

# %% [markdown]
# ### The temperature: why greedy decoding sits at the sharp end
#
# Both estimates for $p$ (Theorems 2 and 3) carry a factor $1/T^2$ at a fixed $\Delta z$ (while $p$ itself also
# sharpens as $T$ falls). We sweep $T$ from 0.05 to 10 for two fixed real perturbations,
# Wanda 30% and Wanda 50%, and compare the KL estimate with the measured KL position by position,
# marking where the spread $m$ is at most 0.5 — the range where section 2 says the approximation
# holds. $1 - \cos(z, z')$ does not depend on $T$ at all.

# %%
TEMPS = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0]
z64 = z_text.double()                     # convert once; the metrics work in float64 anyway


def at_temperature(name, T):
    """KL, its estimate, 1 - cos p, the spread and greedy agreement for one perturbation at one T."""
    zp = Z[name].double()
    div = M.divergences(z64, zp, T)           # KL, p, p' and top-1 agreement, one log-softmax each
    return pd.DataFrame({
        "config": name, "T": T, "kl": div["kl"].numpy(),
        "kl_est": (M.weighted_var(zp - z64, div["p"]) / (2 * T**2)).numpy(),      # Theorem 3
        "one_minus_cos_p": M.one_minus_cos(div["p"], div["p_pruned"]).numpy(),
        "spread": P.spread(z64, zp, T).numpy(), "top1": div["top1"].numpy()})


sweep = pd.concat([at_temperature(name, T) for name in tqdm(["Wanda 30%", "Wanda 50%"], desc="T sweep")
                   for T in TEMPS], ignore_index=True)
sweep["kl_err"] = (sweep["kl_est"] / sweep["kl"] - 1).abs()
sweep["holds"] = sweep["spread"] <= 0.5

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
med = sweep.groupby(["config", "T"]).agg(kl=("kl", "median"), kl_est=("kl_est", "median"),
                                          one_minus_cos_p=("one_minus_cos_p", "mean"), flips=("top1", lambda t: 1 - t.mean()),
                                          holds=("holds", "mean")).reset_index()
for name, g in med.groupby("config"):
    c = helpers.plots.METHOD_COLORS["wanda"] if name == "Wanda 50%" else "#9BCB9F"
    axes[0].plot(g["T"], g["kl"], "o-", color=c, label=f"{name} measured")
    axes[0].plot(g["T"], g["kl_est"], "--", color=c, label=f"{name} estimate")
    axes[1].plot(g["T"], g["holds"], "o-", color=c, label=name)
    axes[2].plot(g["T"], g["one_minus_cos_p"], "o-", color=c, label=f"{name}: 1−cos p")
    axes[2].plot(min(TEMPS) / 1.6, g["flips"].iloc[0], "*", ms=13, color=c, label=f"{name}: share of greedy flips")
    axes[2].plot(g["T"], [real[real["config"] == name]["one_minus_cos_z"].mean()] * len(g), "--", lw=1.5,
                 color=helpers.plots.SPACE_COLORS["z"], alpha=1.0 if name == "Wanda 50%" else 0.5,
                 label=f"{name}: 1−cos z")
axes[0].set(xscale="log", yscale="log", xlabel="T", ylabel="KL(p‖p′), median over positions", title="KL vs its estimate")
axes[1].set(xscale="log", xlabel="T", ylabel="share of positions with spread ≤ 0.5", title="Where the expansion holds")
axes[2].set(xscale="log", xlabel="T", ylabel="mean 1 − cos over positions", title="p sharpens as T → 0")
for ax in axes[:2]:
    ax.legend(fontsize=7)
axes[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the three panels from right to left.
#
# * **Right.** $1 - \cos(z, z')$ (dashed) does not depend on $T$. At high $T$, $p$ is flattened
#   and moves *less* than $z$; as $T$ falls, $1 - \cos(p, p')$ climbs well above it — the gain
#   $G \propto 1/T^2$ at work — until, as $T \to 0$, it settles on the share of positions whose
#   arg-max changed (stars): with $p$ one-hot, a position either keeps its top token
#   ($1 - \cos = 0$) or loses it ($1 - \cos = 1$). Greedy decoding **is** the limit $T \to 0$:
#   only the arg-max survives, small changes are not averaged away, and every changed arg-max
#   changes the rest of the generated text (notebook 05).
# * **Middle.** The expansion is guaranteed (spread $\le 0.5$) only at high $T$; at low $T$ every
#   $\delta_i = \Delta z_i / T$ is large.
# * **Left.** Inside that range the estimate and the measurement coincide, and in practice they
#   stay close well below it, the more so the milder the perturbation. At low $T$ they part
#   ways, but not in the direction that $1/T^2$ suggests: $p$ itself becomes one-hot, so $\mathrm{Var}_p(\Delta z) \to 0$ and the
#   estimate falls to zero, while the measured KL stays large because at some positions the
#   arg-max flips — a jump that a local expansion around $p$ cannot see.
#
# **Self-check.** (a) Inside the range where the expansion holds (spread $\le 0.5$), the KL
# estimate tracks the measured KL at every temperature of the sweep: median relative error below
# 10% for each $T$ with at least 5 such positions; (b) at the lowest temperature the estimate is off
# by more than 30% (median) for Wanda 50%; (c) at $T \to 0$ the mean $1 - \cos p$ approaches the
# share of greedy flips (within 0.1), and exceeds the mean $1 - \cos z$, while at $T = 10$ it is below it.

# %%
ok = sweep[sweep["holds"]]
per_T = ok.groupby(["config", "T"])["kl_err"].agg(["median", "size"])
per_T = per_T[per_T["size"] >= 5]
display(per_T.style.format({"median": "{:.2%}"}))
assert len(per_T) >= 3 and (per_T["median"] < 0.10).all(), f"inside the valid range the estimate should track KL:\n{per_T}"
lowest = sweep[(sweep["config"] == "Wanda 50%") & (sweep["T"] == min(TEMPS))]
assert lowest["kl_err"].median() > 0.3, f"at T={min(TEMPS)} the estimate should break, error {lowest['kl_err'].median():.2f}"
cold = med[(med["config"] == "Wanda 50%") & (med["T"] == min(TEMPS))].iloc[0]
assert abs(cold["one_minus_cos_p"] - cold["flips"]) < 0.1, f"T→0: mean 1−cos p {cold['one_minus_cos_p']:.3f} vs flips {cold['flips']:.3f}"
hot = med[(med["config"] == "Wanda 50%") & (med["T"] == max(TEMPS))].iloc[0]
one_minus_cos_z_w50 = real[real["config"] == "Wanda 50%"]["one_minus_cos_z"].mean()
assert hot["one_minus_cos_p"] < one_minus_cos_z_w50 < cold["one_minus_cos_p"], f"1−cos p: {hot['one_minus_cos_p']:.3f} (T=10), {cold['one_minus_cos_p']:.3f} (T→0); z {one_minus_cos_z_w50:.3f}"
print(f"self-check passed: the estimate tracks KL where the expansion holds; at T = {min(TEMPS)} "
      f"1−cos p = {cold['one_minus_cos_p']:.2f} ≈ greedy flip share {cold['flips']:.2f}")

# %% [markdown]
# **Which positions flip?** At $T \to 0$ a position flips exactly when some token's logit gain
# over the top token exceeds the dense top-1 margin $z_{(1)} - z_{(2)}$. So flips gather where the
# dense model was unsure.

# %%
top2 = z_text.topk(2, dim=-1).values
margins = pd.DataFrame({"dense top-1 margin (logits)": (top2[:, 0] - top2[:, 1]).numpy(),
                        "greedy token": np.where(real[real["config"] == "Wanda 50%"]["top1"].to_numpy() == 1,
                                                 "kept", "changed")})
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.histplot(data=margins, x="dense top-1 margin (logits)", hue="greedy token", bins=30,
             multiple="stack", ax=ax, palette={"kept": "#8C8C8C", "changed": helpers.plots.SPACE_COLORS["p"]})
ax.set_title("Wanda 50%: where the greedy next token changes")
plt.show()
m_changed = margins[margins["greedy token"] == "changed"].iloc[:, 0].median()
m_kept = margins[margins["greedy token"] == "kept"].iloc[:, 0].median()
print(f"median margin: changed {m_changed:.2f}, kept {m_kept:.2f}; "
      f"{(margins['greedy token'] == 'changed').mean():.0%} of positions change their greedy token")
assert m_changed < m_kept, "flipped positions should have smaller dense margins"

# %% [markdown]
# ## 5. Which tokens carry the change
#
# Theorem 3 weights the logit changes by $p$. How much would we lose with other weights? For
# each real perturbation and position we compute $\mathrm{Var}_w(\Delta z)/2$ with four
# weightings $w$: $p$ itself; **uniform** ($1/V$ for every token, i.e. the plain variance of
# $\Delta z$ over the vocabulary); and $p$ restricted to its **top 5** or **top 10** tokens and
# renormalised. And we ask which share of $\mathrm{Var}_p(\Delta z) = \sum_i p_i(\Delta z_i - \mu)^2$
# the $k$ most probable tokens contribute.

# %%
p_text = M.log_softmax(z_text).exp()
KS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
top_idx = p_text.topk(max(KS), dim=-1).indices          # the 1,000 most probable tokens, in order
p_top = p_text.gather(-1, top_idx)
peaked = np.where(p_text.max(-1).values.numpy() > 0.5, "peaked", "flat")


def var_top_k(d, k):
    """Var of Δz under p restricted to its top-k tokens and renormalised."""
    return M.weighted_var(d.gather(-1, top_idx[:, :k]), p_top[:, :k] / p_top[:, :k].sum(-1, keepdim=True))


ratios, shares = [], []
for n in CONFIGS:
    d, kl_n = dz(n), M.kl(z_text, Z[n])
    var_p = M.weighted_var(d, p_text)
    estimates = {"p": var_p, "uniform": d.var(-1, correction=0), "top-5": var_top_k(d, 5), "top-10": var_top_k(d, 10)}
    for wname, v in estimates.items():
        ratios.append(pd.DataFrame({"weights": wname, "config": n, "estimate / measured KL": (v / 2 / kl_n).numpy()}))
    # each token's term p_i (Δz_i − μ)² of Var_p(Δz), for the top tokens in order of p, accumulated
    mu = (p_text * d).sum(-1, keepdim=True)
    cum = (p_top * (d.gather(-1, top_idx) - mu) ** 2).cumsum(-1) / var_p[:, None]
    for k in KS:
        shares.append(pd.DataFrame({"k": k, "config": n, "share": cum[:, k - 1].numpy(), "p": peaked}))
ratios, shares = pd.concat(ratios, ignore_index=True), pd.concat(shares, ignore_index=True)

fig, axes = plt.subplots(1, 2, figsize=(14, 4.2))
sns.boxplot(data=ratios, x="weights", y="estimate / measured KL", ax=axes[0], fliersize=1, color="#C44E52")
axes[0].axhline(1, color="black", ls="--", lw=1)
axes[0].set(yscale="log", title="KL estimate with different token weights")
sns.lineplot(data=shares, x="k", y="share", hue="p", estimator="median", errorbar=("pi", 50), ax=axes[1], marker="o")
axes[1].set(xscale="log", xlabel="k most probable tokens", ylabel="share of Var_p(Δz)",
            title="How much of the variance the top-k tokens carry (median, IQR)")
plt.show()

within2 = ratios.assign(ok=np.abs(np.log2(ratios["estimate / measured KL"])) < 1).groupby("weights")["ok"].mean()
med_share = shares.groupby("k")["share"].median()
print("share of cases where the estimate is within a factor 2 of the measured KL:")
print(within2.map("{:.0%}".format).to_string())
print(f"median share of Var_p(Δz) carried by the top 10 tokens: {med_share[10]:.0%}, top 100: {med_share[100]:.0%} "
      f"(of {V:,} tokens)")

# %% [markdown]
# The $p$-weighting is what makes the estimate work: the plain variance over the vocabulary
# (uniform) and the truncated top-$k$ weights scatter far more. The variance lives on a tiny
# corner of the vocabulary: the 100 most probable tokens, 0.2% of it, carry most of
# $\mathrm{Var}_p(\Delta z)$, and for peaked $p$ the first few tokens carry nearly all. Where those
# few tokens' logits change relative to each other, $p$ changes; what happens to the other
# 49,000 logits hardly matters. Notebook 04 turns this around: a multiple-choice question reads
# *only* a few option tokens.
#
# **Self-check.** (a) With weights $p$ the estimate is within a factor 2 of the measured KL more
# often than with uniform, top-5 or top-10 weights; (b) the 100 most probable tokens carry more than
# 70% of $\mathrm{Var}_p(\Delta z)$ (median); (c) for peaked $p$, the top 5 carry more than for flat $p$.

# %%
assert (within2["p"] > within2.drop("p")).all(), f"p-weights should beat the others:\n{within2}"
assert med_share[100] > 0.7, f"top-100 share {med_share[100]:.2f}"
peak_share = shares[shares["k"] == 5].groupby("p")["share"].median()
assert peak_share["peaked"] > peak_share["flat"], f"{peak_share}"
print("self-check passed: p-weights win; the top 100 tokens carry most of the variance")

# %% [markdown]
# ## 6. Explore it yourself
#
# `helpers.widgets.softmax_explorer` pushes the dense hidden state $h$ of one prompt by
# $\|\Delta h\| = \varepsilon \|h\|$, either in a random direction or along the real Wanda-50%
# change of that prompt (rescaled), and shows live $1 - \cos$ in $h$, $z$, $p$ and the KL, each
# with its second-order estimate (black tick), plus the top tokens before and after. Sliders:
# $\varepsilon$, $T$, and the peakedness of $p$ (the 32 prompts ordered from the flattest to the
# most peaked $p$). Things to try: lower $T$ until the top token flips; compare a flat and a
# peaked prompt at the same $\varepsilon$; find where the black ticks leave the bars.
#
# (The sliders need a live kernel. The static figure below shows the same curves for three
# prompts, so that the rendered page shows something too.)

# %%
dh_w50 = h_prompts_w50 - h_prompts
explorer = helpers.widgets.softmax_explorer(model, h_prompts, labels=PROMPTS, tokenizer=tokenizer,
                                            directions={"Wanda 50% (real Δh, rescaled)": dh_w50})
display(explorer)

# %%
fig = helpers.widgets.explorer_figure(model, h_prompts, direction=dh_w50, labels=PROMPTS,
                                     direction_name="the real Wanda-50% direction")
plt.show()
sizes_w50 = (dh_w50.norm(dim=-1) / h_prompts.norm(dim=-1))
print(f"the real Wanda-50% change has ε = ||Δh||/||h|| = {sizes_w50.median():.3f} (median over prompts)")

# %% [markdown]
# Along the real pruning direction, the lines of each panel are parallel at small $\varepsilon$
# (every distance grows like $\varepsilon^2$, as all three theorems say) but they sit at different
# heights, and the order depends on how peaked $p$ is: for the flattest $p$ the probabilities move
# more than the logits, for the most peaked $p$ much less — the top token keeps its mass until it
# flips.
#
# **Self-check.** At a small push ($\varepsilon = 0.01$) along the real Wanda-50% direction,
# $1 - \cos p$ exceeds $1 - \cos z$ for the flattest prompt and falls below it for the most peaked.

# %%
order_peak = helpers.widgets.peakedness_order(model, h_prompts)
ends = [int(order_peak[0]), int(order_peak[-1])]
small_push = helpers.widgets.deviations(model, h_prompts[ends], 0.01, direction=dh_w50[ends])
display(small_push[["p_max", "one_minus_cos_h", "one_minus_cos_z", "one_minus_cos_p", "kl"]].set_axis(["flattest", "most peaked"]))
assert small_push["one_minus_cos_p"].iloc[0] > small_push["one_minus_cos_z"].iloc[0], "flat p: p should move more than z"
assert small_push["one_minus_cos_p"].iloc[1] < small_push["one_minus_cos_z"].iloc[1], "peaked p: p should move less than z"
print("self-check passed: peakedness decides whether p moves more or less than z")

# %% [markdown]
# ## Exercises
#
# **Exercise 1** (★★☆, 15 min). Derive the first-order term of $\mathrm{KL}(p\|p')$ and of
# $1 - \cos(p, p')$ in $\delta$ directly (without cumulants), and show that it vanishes.
#
# <details><summary>Solution</summary>
#
# To first order, (1) gives $p'_i = p_i(1 + \delta_i - \mu_p) + O(\delta^2)$ with
# $\mu_p = \sum_j p_j \delta_j$, so $\log(p_i/p'_i) = -(\delta_i - \mu_p) + O(\delta^2)$ and
# $\mathrm{KL} = -\sum_i p_i(\delta_i - \mu_p) + O(\delta^2) = -(\mu_p - \mu_p) + O(\delta^2)$:
# the first-order term is zero because the change is centred under $p$ (probability is moved,
# not created).
# For the cosine, let $q_i = p_i e^{\delta_i} = p_i(1 + \delta_i) + O(\delta^2)$ (lengths do not
# matter). Then $\langle p, q\rangle = \|p\|^2(1 + \mu_r)$ and
# $\|q\| = \|p\|(1 + \mu_r) + O(\delta^2)$ with $\mu_r = \sum_i r_i\delta_i$, so
# $\cos(p, q) = \|p\|^2(1+\mu_r) / (\|p\|^2(1 + \mu_r)) + O(\delta^2) = 1 + O(\delta^2)$. In both
# cases the reason is the same: the function has its extreme value (KL = 0, cos = 1) at $p' = p$,
# so its gradient there is zero.
# </details>
#
# **Exercise 2** (★☆☆, 5 min). Find a perturbation that moves $z$ a lot but leaves $p$ exactly
# unchanged. What does Theorem 1 predict for $1 - \cos(z, z')$, and what do Theorems 2 and 3 predict?
#
# <details><summary>Solution</summary>
#
# Shift all logits by the same constant (identity (1): the factor $e^{c/T}$ cancels).
#
# ```python
# z = z_prompts[0].double()
# z_shift = z + P.shift_all(z, 5.0)                 # Δz = 5 for every token
# print("1 - cos z:", M.one_minus_cos(z, z_shift).item(), " Thm 1:", M.second_order_cos(z, z_shift).item())
# print("KL:", M.kl(z, z_shift).item(), " Thm 3:", M.second_order_kl(z, z_shift).item())
# print("1 - cos p:", M.one_minus_cos(M.log_softmax(z).exp(), M.log_softmax(z_shift).exp()).item(),
#       " Thm 2:", M.second_order_cos_p(z, z_shift).item())
# ```
#
# $1 - \cos(z, z')$ is large (the shift is nearly orthogonal to $z$, whose mean is close to 0, and
# Theorem 1 gives $\|c\mathbf{1}_\perp\|^2 / (2\|z\|^2)$), while KL, $1 - \cos p$ and both estimates
# are 0 up to rounding: a constant has zero variance under any weights. Section 4 found the same
# effect inside real pruning: dropping attention sublayers adds a large uniform shift.
# </details>
#
# **Exercise 3** (★★★, 20 min). Push the expansion one order further: show that
# $\mathrm{KL} = \sigma_p^2/2 + \kappa_p/6 + O(\delta^4)$ and
# $1 - \cos(p,p') = \sigma_r^2/2 + \kappa_r/2 + O(\delta^4)$, and check numerically on the top-1
# shift of the most peaked prompt that the third-order versions fix most of the error of the
# second-order ones.
#
# <details><summary>Solution</summary>
#
# The expansions are in section 1 ($K(1) - \mu$ for KL; $\log\cos = K_r(1) - \tfrac12K_r(2)$, whose
# cubic term is $\kappa_r(1 - 4)/6 = -\kappa_r/2$, and $1 - e^{-u} = u + O(u^2)$).
#
# ```python
# i = int(p_prompts.max(-1).values.argmax())          # the most peaked prompt
# z = z_prompts[i].double()
# for s in (0.1, 0.3, 1.0):
#     zp = z + P.single_token(z, s)
#     p = M.log_softmax(z).exp()
#     r = p**2 / (p**2).sum()
#     d = zp - z
#     def cumulants(w):
#         mu = (w * d).sum()
#         return (w * (d - mu) ** 2).sum(), (w * (d - mu) ** 3).sum()
#     vp, kp = cumulants(p)
#     vr, kr = cumulants(r)
#     kl = M.kl(z, zp).item()
#     cp = M.one_minus_cos(p, M.log_softmax(zp).exp()).item()
#     print(f"s={s}: KL {kl:.3e}  2nd {vp/2:.3e}  3rd {vp/2 + kp/6:.3e} | "
#           f"1-cos {cp:.3e}  2nd {vr/2:.3e}  3rd {vr/2 + kr/2:.3e}")
# ```
#
# At $s = 0.1$ and $0.3$ the third-order versions remove most of the error. At $s = 1$ the cosine's
# third-order version overshoots badly: for a jump of one logit on the token that holds 98% of
# the mass the series itself has stopped converging quickly — exactly the "one big jump" failure
# of section 2.
# </details>
#
# ## Summary
#
# * Softmax reweights every token by $e^{\Delta z_i / T}$ (identity (1)). Expanding to second order
#   gives the paper's three estimates: $1 - \cos \approx \|\Delta x_\perp\|^2 / 2\|x\|^2$ in any
#   space, $1 - \cos(p,p') \approx \mathrm{Var}_r(\Delta z)/2T^2$ and
#   $\mathrm{KL} \approx \mathrm{Var}_p(\Delta z)/2T^2$. First-order terms vanish because each
#   distance is at its minimum when nothing changes.
# * The estimates match measurement over many orders of magnitude for small perturbations,
#   controlled and real; they break when one token's logit change is large against $T$ — large
#   $\Delta z$, peaked $p$, low $T$ — and the cosine estimate breaks first.
# * $p$ moves more than $z$ because softmax has a gain of about $\|z\|^2/(V T^2)$; pruning uses
#   only part of it, since it shifts logits uniformly (invisible to $p$) and changes the top tokens
#   relative to each other less than average. As $T \to 0$ the gain grows without bound, and
#   greedy decoding sees the perturbation as a yes/no question: does the top token flip?
#   Under Wanda 50% it does at a large share of positions in running text.
# * The change that matters lives on the ~100 most probable tokens.
#
# **Next: notebook 04** asks the opposite question: multiple choice reads only a handful of option
# tokens, and retrieval reads $h$ directly. Why do those tasks survive pruning?

# %%
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")
