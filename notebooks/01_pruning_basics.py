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
# # 01 · Pruning basics: what gets removed, and what it costs
#
# Pruning makes a language model smaller by removing parts of it: single weights, or whole
# sublayers. This notebook prunes the course model in the ways the paper studies (He et al.,
# 2026, *Demystifying When Pruning Works via Representation Hierarchies*), measures what each
# way removes and what it costs, and ends with the puzzle the rest of the series solves.
#
# **What you will learn**
# - the two families of pruning: zeroing weights *inside* the linear maps (magnitude, Wanda,
#   SparseGPT, unstructured or 2:4) and dropping whole *sublayers* (attention, MLP, blocks);
# - how Wanda's and SparseGPT's choices differ from plain magnitude, on a real weight matrix;
# - how much each attention and MLP sublayer changes the residual stream, across depth;
# - how perplexity grows with sparsity and with the number of dropped sublayers;
# - what pruning buys on a CPU (parameters, memory, FLOPs, time per token), honestly;
# - the teaser of the series: the same facts asked as multiple choice and as free generation.
#
# **Prerequisites:** notebook 00 (the model, $h$, $z$, $p$); a little PyTorch (`nn.Linear`,
# forward hooks).
#
# **Runtime:** about 2–3 minutes on a 2-core laptop CPU. Every pruned model is built once and
# measured while it exists; nothing is downloaded.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm
import xxhash

import helpers
from helpers import tasks
from helpers.pruning import calibration_ids

helpers.plots.set_theme()
helpers.seed_everything(0)
COLORS = helpers.plots.METHOD_COLORS

model, tokenizer = helpers.load_model()
A = helpers.arch(model)   # where the layers, norms and unembedding live
print(f"{model.config.num_hidden_layers} layers, d = {model.config.hidden_size}, "
      f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")


# %% [markdown]
# ## 1. What pruning removes
#
# Every decoder layer $\ell$ of the model adds two things to the residual stream $h$: an
# attention sublayer and an MLP sublayer,
#
# $$h \leftarrow h + \mathrm{Attn}_\ell(\mathrm{norm}(h)), \qquad h \leftarrow h + \mathrm{MLP}_\ell(\mathrm{norm}(h)).$$
#
# Inside them are **seven linear maps** per layer: $W_q, W_k, W_v, W_o$ in attention and
# $W_\text{gate}, W_\text{up}, W_\text{down}$ in the MLP. Together they hold 79% of the weights;
# the rest are the token embedding (which is also the output head $W_U$ here) and the norms.
#
# | family | method | what it removes | how it chooses |
# |---|---|---|---|
# | intra-layer, unstructured | **magnitude** | a fraction $s$ of the weights in every row of every linear map | smallest $\lvert W_{ij}\rvert$ |
# | | **Wanda** (Sun et al., 2023) | same | smallest $\lvert W_{ij}\rvert \cdot \lVert X_j \rVert_2$ |
# | | **SparseGPT** (Frantar & Alistarh, 2023) | same, and *updates* the weights that stay | smallest $w_{ij}^2 / [H^{-1}]_{jj}^2$, error spread over later columns |
# | intra-layer, semi-structured | any of the three with `pattern="2:4"` | 2 of every 4 consecutive weights in a row | the same scores, within each group of 4 |
# | inter-layer (LLM-Drop, He et al., 2024) | **drop-attn / drop-mlp / drop-block** | whole attention sublayers, MLP sublayers, or both | the least important (section 3) |
#
# Symbols: a linear map $W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$ computes $y = W x$;
# row $i$ makes output $i$. $X \in \mathbb{R}^{d_\text{in} \times N}$ holds the inputs $x$ that
# this map sees on $N$ *calibration* tokens (a few thousand tokens of ordinary text that ship
# with the course), and $\lVert X_j \rVert_2$ is the size of input feature $j$ over all of them.
# SparseGPT uses $H = \tfrac{2}{N} X X^\top$, the curvature of the layer's reconstruction error
# $\lVert W X - W' X \rVert^2$. Embeddings, norms and the output head stay dense, as in both
# papers.
#
# `helpers.pruned` does all of it as a context manager: inside the `with` block the model is
# pruned in place; on exit the dense weights come back **bit for bit**, without reloading. The
# object it yields reports what was removed.

# %%
def fingerprint(model):
    """A 128-bit hash (XXH3) of every tensor in the state dict: equal fingerprints = identical bits."""
    h = xxhash.xxh3_128()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().view(torch.uint8).numpy())
    return h.hexdigest()[:16]


DENSE_FINGERPRINT = fingerprint(model)

with helpers.pruned(model, "magnitude", sparsity=0.5) as result:
    print(result)
    q0 = A.linears(0)["self_attn.q_proj"].weight
    print(f"\nlayer 0 q_proj: {int((q0 == 0).sum())} of {q0.numel()} weights are now zero")

print("dense again:", fingerprint(model) == DENSE_FINGERPRINT)
result.modules.head(7)

# %% [markdown]
# The report counts two totals: the sparsity of the **prunable** weights (the seven linear maps,
# exactly 50% here) and of **all** weights (lower, because the embedding matrix is never
# pruned).

# %% [markdown]
# ## 2. Magnitude and Wanda choose different weights
#
# Magnitude pruning assumes a small weight matters little. But a weight multiplies an input:
# a small weight on an input feature that is always large can matter more than a large weight on
# a feature that is nearly always zero. Wanda scores each weight by both,
# $S_{ij} = \lvert W_{ij} \rvert \cdot \lVert X_j \rVert_2$, and in each row zeros the lowest.
#
# We compute $\lVert X_j \rVert_2$ ourselves with a forward pre-hook on the query map $W_q$ of
# layer 0, over the same calibration tokens the helper uses, and build both masks by hand.

# %%
CALIB_WANDA = 4  # calibration sequences of 128 tokens for Wanda in this notebook (see section 4)
calib_ids = calibration_ids(tokenizer, n_samples=CALIB_WANDA)
print(f"calibration batch: {tuple(calib_ids.shape)} tokens")

q_proj = A.linears(0)["self_attn.q_proj"]
sq_norm = torch.zeros(q_proj.in_features)


def collect(module, args):
    x = args[0].reshape(-1, args[0].shape[-1])
    sq_norm.add_(x.pow(2).sum(0))


handle = q_proj.register_forward_pre_hook(collect)
try:
    with torch.no_grad():
        model.model(input_ids=calib_ids)
finally:
    handle.remove()
x_norm = sq_norm.sqrt()

W = q_proj.weight.detach()
k = W.shape[1] // 2  # 50% of each row
mask_magnitude = torch.zeros_like(W, dtype=torch.bool).scatter_(
    1, W.abs().topk(k, dim=1, largest=False).indices, True)
mask_wanda = torch.zeros_like(W, dtype=torch.bool).scatter_(
    1, (W.abs() * x_norm).topk(k, dim=1, largest=False).indices, True)
agree = (mask_magnitude == mask_wanda).float().mean().item()
print(f"input norms: median {x_norm.median():.1f}, max {x_norm.max():.1f} (feature {int(x_norm.argmax())})")
print(f"the two masks agree on {agree:.1%} of the weights")

# %%
top = int(x_norm.argmax())
cols = slice(max(0, top - 20), max(0, top - 20) + 40)  # 40 input features around the largest
rows = slice(0, 24)
fig, axes = plt.subplots(2, 3, figsize=(12, 5.2), sharex="col",
                         gridspec_kw={"height_ratios": [4, 1], "hspace": 0.08})
sns.heatmap(W[rows, cols].abs().numpy(), ax=axes[0, 0], cmap="mako_r", cbar=False)
axes[0, 0].set_title("|W| (crop)")
for ax, mask, name in ((axes[0, 1], mask_magnitude, "magnitude"), (axes[0, 2], mask_wanda, "wanda")):
    sns.heatmap((~mask[rows, cols]).numpy(), ax=ax, cmap=["white", COLORS[name]], cbar=False,
                linewidths=0.2, linecolor="#dddddd")
    ax.set_title(f"{name}: kept weights (coloured)")
for j in range(3):
    axes[0, j].set_ylabel("output row i" if j == 0 else "")
    axes[0, j].set_yticks([])
    axes[1, j].bar(np.arange(cols.stop - cols.start) + 0.5, x_norm[cols].numpy(), width=0.8,
                   color=COLORS["wanda"])
    axes[1, j].set_xticks([])
    axes[1, j].set_xlabel("input feature j")
axes[1, 0].set_ylabel("‖X_j‖")
fig.suptitle("Layer 0, W_q: which weights each method keeps (bottom: input norms of the same features)")
plt.show()

# %% [markdown]
# Wanda keeps the whole column of the one feature with a huge input norm, even where those
# weights are small, and gives up weights elsewhere to pay for it; magnitude ignores the inputs.
# Both remove exactly half of every row.

# %%
assert bool(((mask_magnitude.sum(1) == k) & (mask_wanda.sum(1) == k)).all()), "each row should lose exactly 50%"
assert agree < 0.95, f"Wanda and magnitude should choose visibly different weights here (agreement {agree:.1%})"
kept_top = (~mask_wanda[:, top]).float().mean().item()
assert kept_top > (~mask_magnitude[:, top]).float().mean().item() and kept_top > 0.9, \
    "Wanda should keep (almost) the whole column of the feature with the largest input norm"
print(f"Wanda keeps {kept_top:.0%} of column {top}; magnitude keeps {(~mask_magnitude[:, top]).float().mean():.0%}")

# %% [markdown]
# ## 3. How much does each sublayer change the residual stream?
#
# LLM-Drop (He et al., 2024, *What Matters in Transformers? Not All Attention Is Needed*) scores
# a sublayer with residual input $x$ and output $x + f(x)$ by how much it turns the residual
# stream:
#
# $$\mathrm{importance} = 1 - \cos\big(x,\; x + f(x)\big),$$
#
# averaged over calibration tokens. For an attention sublayer $x$ is `resid_pre` and
# $x + f(x)$ is `resid_mid`; for an MLP sublayer `resid_mid` → `resid_post`; for a whole block
# `resid_pre` → `resid_post`. A sublayer with importance near 0 barely changes the direction of
# $h$, so removing it should cost little. `helpers.sublayer_importance` makes one forward pass
# with hooks.

# %%
CALIB_IMPORTANCE = 8  # sequences of 128 calibration tokens
importance = helpers.sublayer_importance(model, tokenizer, n_samples=CALIB_IMPORTANCE)
imp = importance.pivot(index="layer", columns="sublayer", values="importance")

fig, ax = plt.subplots(figsize=(8, 3.8))
for sub, color in (("attn", COLORS["drop-attn"]), ("mlp", COLORS["drop-mlp"]), ("block", COLORS["drop-block"])):
    ax.plot(imp.index, imp[sub], marker="o", ms=3.5, label=sub, color=color,
            lw=1.2 if sub == "block" else 2, alpha=0.6 if sub == "block" else 1)
ax.set_yscale("log")
ax.set_xlabel("layer")
ax.set_ylabel("1 − cos(x, x + f(x))")
ax.set_title("Sublayer importance across depth")
ax.legend()
plt.show()
imp.round(4).T

# %% [markdown]
# Three things to see. The first block rewrites the token embedding almost completely (its
# importance is close to 1), and the last block is also among the most important. In most layers
# the attention sublayer turns the residual stream less than the MLP sublayer of the same layer,
# which is the observation behind "not all attention is needed". A few attention sublayers are
# exceptions (printed below): importance is measured, not assumed.

# %%
attn_less = (imp["attn"] < imp["mlp"]).mean()
block_top3 = set(imp["block"].nlargest(3).index)
print(f"attention below MLP in {attn_less:.0%} of layers; "
      f"median importance attn {imp['attn'].median():.4f} vs mlp {imp['mlp'].median():.4f}")
print("layers whose attention outweighs their MLP:", imp.index[imp["attn"] > imp["mlp"]].tolist())
assert imp["attn"].median() < 0.75 * imp["mlp"].median(), "attention should change h less than the MLP, typically"
assert attn_less >= 0.7, f"attention should be the smaller of the two in most layers ({attn_less:.0%})"
assert {0, len(imp) - 1} <= block_top3, f"first and last blocks should be among the 3 most important ({block_top3})"

# %% [markdown]
# ## 4. Perplexity vs sparsity
#
# **Perplexity** measures how surprised the model is by held-out text $t_1 \dots t_N$ (paragraphs
# that ship with the course and were never used for calibration):
#
# $$\mathrm{PPL} = \exp\Big(-\tfrac{1}{N}\textstyle\sum_k \log p(t_k \mid t_{<k})\Big).$$
#
# A perfect model scores 1; guessing uniformly over the 49,152 tokens would score 49,152.
# `helpers.perplexity` reads the text in windows of 256 tokens. To keep the sweep quick we use the
# first 512 tokens (call it without `max_tokens` for all 2,668).
#
# The sweep prunes with each method at several sparsities and at 2:4. While each pruned model
# exists we also take everything later sections need from it (speed, memory, the two task
# accuracies), so every configuration is pruned exactly once.
#
# *Calibration sizes.* Wanda only needs input norms, which settle after a few hundred tokens: we
# give it 4 sequences of 128 tokens (the same batch as in section 2). SparseGPT inverts $H$, a $d_\text{in} \times d_\text{in}$
# matrix with $d_\text{in}$ up to 1,536 for $W_\text{down}$; with fewer tokens than that, $H$ is
# singular and SparseGPT over-fits its calibration text, so it gets the library default of
# 16 × 128 = 2,048 tokens. Both are calibrated layer by layer: the activations that calibrate
# layer $\ell$ have passed through the already pruned layers $0 \dots \ell-1$, as in both papers.

# %%
PPL_TOKENS = 512
facts = tasks.load_facts()


def ppl(model):
    return helpers.perplexity(model, tokenizer, max_tokens=PPL_TOKENS)


def ask_both(model):
    """Accuracy on the shipped facts, asked as multiple choice and as free generation."""
    return {"multiple choice": tasks.accuracy(tasks.multiple_choice(model, tokenizer, facts)),
            "generation": tasks.accuracy(tasks.free_generation(model, tokenizer, facts))}


def cost(model, new_tokens=16, repeats=3):
    """Parameters, weight memory, FLOPs per token of a forward pass, and decoding time per token."""
    dropped = helpers.pruning.dropped_sublayers(model)
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    skipped = sum(lin.weight.numel() for i in range(A.n_layers)
                  for name, lin in A.linears(i).items()
                  if (i, "attn" if name.startswith("self_attn") else "mlp") in dropped)
    ids = calib_ids[:1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, use_cache=False)
    prompt = tokenizer("The history of the bicycle", return_tensors="pt")
    model.generate(**prompt, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    times = []  # after one warm-up call
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.generate(**prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False, pad_token_id=tokenizer.pad_token_id)
        times.append((time.perf_counter() - t0) / new_tokens)
    return {"stored params (M)": params / 1e6, "non-zero params (M)": nonzero / 1e6,
            "params used per token (M)": (nonzero - skipped) / 1e6,
            "weight memory (MB)": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
            "GFLOPs per token": counter.get_total_flops() / ids.numel() / 1e9,
            "ms per generated token": 1e3 * float(np.median(times))}


dense = {"ppl": ppl(model)}
costs = {"dense": cost(model)}
asked = {"dense": ask_both(model)}
print(f"dense perplexity: {dense['ppl']:.1f} on the first {PPL_TOKENS} held-out tokens")
print(asked["dense"])

# %%
SPARSITIES = [0.2, 0.4, 0.5, 0.6, 0.7]
GRID = ([("magnitude", s) for s in SPARSITIES] + [("magnitude", "2:4")]
        + [("wanda", s) for s in SPARSITIES] + [("wanda", "2:4")]
        + [("sparsegpt", 0.5), ("sparsegpt", "2:4")])
MEASURE_COST = {("wanda", 0.5): "50% unstructured (Wanda)", ("wanda", "2:4"): "2:4 (Wanda)"}
ASK = {("wanda", 0.5): "Wanda 50%"}

rows, seconds = [], {}
for method, level in tqdm(GRID, desc="prune + measure"):
    opts = {"pattern": level} if isinstance(level, str) else {"sparsity": level}
    if method == "wanda":
        opts["calibration"] = calib_ids
    with helpers.pruned(model, method, **opts) as res:
        seconds[(method, level)] = res.seconds
        rows.append({"method": method, "level": level, "ppl": ppl(model),
                     "sparsity": res.sparsity_prunable})
        if (method, level) == ("wanda", 0.5):
            wanda_mask_from_helper = A.linears(0)["self_attn.q_proj"].weight == 0
        if (method, level) in MEASURE_COST:
            costs[MEASURE_COST[(method, level)]] = cost(model)
        if (method, level) in ASK:
            asked[ASK[(method, level)]] = ask_both(model)
sweep = pd.DataFrame(rows)
print("seconds to prune:", {f"{m} {l}": round(s, 1) for (m, l), s in seconds.items()})
sweep.pivot(index="level", columns="method", values="ppl").round(1)

# %%
fig, ax = plt.subplots(figsize=(7.5, 4.2))
unstructured = sweep[sweep["level"].map(lambda v: not isinstance(v, str))].astype({"level": float})
for method, df in unstructured.groupby("method"):
    ax.plot(df["level"], df["ppl"], marker="o", label=method, color=COLORS[method])
for _, r in sweep[sweep["level"] == "2:4"].iterrows():
    ax.scatter([0.5], [r["ppl"]], marker="D", s=70, color=COLORS[r["method"]], edgecolor="black",
               zorder=5, label=f"{r['method']} 2:4")
ax.axhline(dense["ppl"], color=COLORS["dense"], ls="--", lw=1, label="dense")
ax.set_yscale("log")
ax.set_xlabel("sparsity of the linear maps")
ax.set_ylabel(f"perplexity (first {PPL_TOKENS} held-out tokens)")
ax.set_title("Perplexity vs sparsity")
ax.legend(ncol=2, fontsize=8)
plt.show()

# %% [markdown]
# At 20% nothing much happens. Beyond 40% magnitude pruning falls apart while Wanda and
# SparseGPT degrade gracefully: knowing which inputs are large (Wanda), and also compensating
# with the weights that stay (SparseGPT), both matter. The 2:4 pattern is also 50% sparse but
# costs more than unstructured 50%, since every group of four must give up two weights even where
# all four are important. And on exit, every one of these models turned back into the dense one.

# %%
at = sweep.set_index(["method", "level"])["ppl"]
print(f"at 50%: magnitude {at['magnitude', 0.5]:.0f}, Wanda {at['wanda', 0.5]:.0f}, "
      f"SparseGPT {at['sparsegpt', 0.5]:.0f} (dense {dense['ppl']:.0f})")
assert at["wanda", 0.5] < 0.5 * at["magnitude", 0.5], "Wanda should beat magnitude clearly at 50%"
assert at["sparsegpt", 0.5] < 0.5 * at["magnitude", 0.5], "SparseGPT should beat magnitude clearly at 50%"
assert at["sparsegpt", 0.5] < at["wanda", 0.5] and at["sparsegpt", "2:4"] < at["wanda", "2:4"], \
    "SparseGPT's weight update should beat Wanda's pure masking at 50% and at 2:4"
for m in ("magnitude", "wanda", "sparsegpt"):
    assert at[m, "2:4"] > at[m, 0.5], f"{m}: 2:4 should cost more than unstructured 50%"
assert at["wanda", 0.2] < 1.25 * dense["ppl"], "20% Wanda should be nearly free"
assert torch.equal(wanda_mask_from_helper, mask_wanda), \
    "helpers.pruned('wanda') should choose exactly the layer-0 mask we built by hand in section 2"
assert fingerprint(model) == DENSE_FINGERPRINT, "every pruned block must restore the dense weights bit for bit"
print("layer-0 Wanda mask = our hand-built mask; dense weights restored bit for bit")


# %% [markdown]
# ## 5. Dropping attention, MLP and whole blocks
#
# Now remove whole sublayers, the least important first (section 3). `pruned(model,
# "drop-attn", n=8)` ranks the sublayers itself; here we rank them once from the table we already
# have and pass `layers=`, which does the same thing without scoring again. A dropped sublayer is
# skipped: the residual stream passes through unchanged, also while generating with the KV cache.

# %%
def least_important(kind, n):
    return sorted(imp[kind].nsmallest(n).index.tolist())


N_DROPPED = [4, 8, 12]
drop_rows = []
for kind in tqdm(["attn", "mlp", "block"], desc="drop"):
    for n in N_DROPPED:
        with helpers.pruned(model, f"drop-{kind}", layers=least_important(kind, n)) as res:
            drop_rows.append({"dropped": kind, "n": n, "ppl": ppl(model),
                              "sparsity": res.sparsity_prunable})
            if (kind, n) == ("attn", 8):
                costs["8 attention sublayers dropped"] = cost(model)
                asked["8 attn dropped"] = ask_both(model)
            if (kind, n) == ("mlp", 4):
                asked["4 MLP dropped"] = ask_both(model)
drops = pd.DataFrame(drop_rows)

fig, ax = plt.subplots(figsize=(7.5, 4.2))
for kind, df in drops.groupby("dropped"):
    ax.plot([0] + df["n"].tolist(), [dense["ppl"]] + df["ppl"].tolist(), marker="o",
            label=f"drop {kind}", color=COLORS[f"drop-{kind}"])
ax.set_yscale("log")
ax.set_xlabel("number of sublayers / blocks dropped (least important first)")
ax.set_ylabel("perplexity")
ax.set_title("Perplexity vs dropped layers")
ax.legend()
plt.show()
drops.pivot(index="n", columns="dropped", values="ppl").round(1)

# %% [markdown]
# Dropping a third of the attention sublayers costs less perplexity than dropping a handful of
# MLP sublayers; whole blocks sit in between (each also loses its MLP). This is LLM-Drop's
# finding on a much larger model, reproduced on a 135M one.

# %%
d = drops.set_index(["dropped", "n"])["ppl"]
print(f"8 dropped: attn {d['attn', 8]:.0f}, mlp {d['mlp', 8]:.0f}, block {d['block', 8]:.0f} (dense {dense['ppl']:.0f})")
assert d["attn", 8] < d["block", 8] < d["mlp", 8], "attention should be the cheapest to drop, MLP the dearest"
assert d["attn", 8] < d["mlp", 4], "8 attention sublayers should cost less than 4 MLP sublayers"
assert d["attn", 8] < 2 * dense["ppl"], "8 of 30 attention sublayers should cost less than 2x perplexity"
assert d["mlp", 8] > 5 * dense["ppl"], "8 MLP sublayers should hurt a lot"
with helpers.pruned(model, "drop-attn", n=8, n_samples=CALIB_IMPORTANCE) as res:  # its own ranking
    assert res.dropped == least_important("attn", 8), (res.dropped, least_important("attn", 8))
assert fingerprint(model) == DENSE_FINGERPRINT
print("pruned(..., n=8) drops", res.dropped)

# %% [markdown]
# ## 6. What does it buy?
#
# Here are the measured numbers for the dense model, 50% unstructured sparsity, 2:4, and 8
# dropped attention sublayers:

# %%
costs_df = pd.DataFrame(costs).T
costs_df.round(3)

# %% [markdown]
# Here is what the table says:
#
# - **Zeros are still stored and still multiplied.** The pruned models keep every weight in the
#   same dense float32 tensors, so memory is unchanged and a dense matrix multiply does the same
#   work whether an entry is 0 or not: same FLOPs, same time per token (up to measurement noise
#   on a shared CPU). Turning zeros into savings needs a sparse format *and* a kernel that
#   exploits it. Unstructured sparsity stored as CSR needs a column index for every kept weight,
#   so at 50% it takes *more* memory than the dense matrix (see the cell below). 2:4 has
#   fast kernels on recent NVIDIA GPUs (2 bits of metadata per kept weight, about 1.5–2× faster
#   matrix multiplies), but not in PyTorch on a CPU.
# - **Dropped sublayers are really skipped.** They do no work, so FLOPs and time per token go
#   down. Their weights still sit in memory here, because `pruned` must be able to restore them;
#   a model saved without them would be smaller by the "params used per token" difference.

# %%
W_down = A.linears(10)["mlp.down_proj"].weight.detach()
with helpers.pruned(model, "magnitude", sparsity=0.5):
    csr = A.linears(10)["mlp.down_proj"].weight.detach().to_sparse_csr()
    csr_bytes = sum(t.numel() * t.element_size() for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
dense_bytes = W_down.numel() * W_down.element_size()
print(f"layer 10 W_down: dense {dense_bytes / 1e6:.2f} MB, 50% sparse as CSR {csr_bytes / 1e6:.2f} MB")

# %%
c = costs_df
base = c.loc["dense"]
for name in ("50% unstructured (Wanda)", "2:4 (Wanda)"):
    assert c.loc[name, "weight memory (MB)"] == base["weight memory (MB)"], "zeros are still stored"
    assert abs(c.loc[name, "GFLOPs per token"] - base["GFLOPs per token"]) < 1e-6, "zeros are still multiplied"
    # Wall times are measured and shown, but not asserted: they depend on the machine and its
    # load. The FLOP count above is the exact statement.
    print(f"{name}: {c.loc[name, 'ms per generated token'] / base['ms per generated token']:.2f}x "
          f"the dense time per token")
    assert c.loc[name, "non-zero params (M)"] < 0.7 * base["non-zero params (M)"]
drop = c.loc["8 attention sublayers dropped"]
assert drop["GFLOPs per token"] < base["GFLOPs per token"] - 8 * 4 * 576 * 576 / 1e9 * 0.9, \
    "8 dropped attention sublayers should save at least their projection FLOPs"
assert drop["params used per token (M)"] < base["params used per token (M)"]
assert csr_bytes > dense_bytes, "CSR at 50% should take more memory than the dense matrix"
print(f"time per token: dense {base['ms per generated token']:.1f} ms, "
      f"8 attn dropped {drop['ms per generated token']:.1f} ms")

# %% [markdown]
# ## 7. The teaser: the same facts, asked two ways
#
# The course ships 56 short facts ("The capital of France is …"). Each can be asked two ways:
#
# - **multiple choice**: score four candidate answers by their log-likelihood after the prompt
#   and pick the best (`helpers.tasks.multiple_choice`): only the *ranking* of four options
#   matters;
# - **free generation**: let the model write greedily and check whether the right answer is
#   among its first words (`helpers.tasks.free_generation`): every token has to come out right,
#   one after another.
#
# We measured both for the dense model and for several pruned ones along the way.

# %%
acc = (pd.DataFrame(asked).T.rename_axis("model").reset_index()
       .melt(id_vars="model", var_name="asked as", value_name="accuracy"))
fig, ax = plt.subplots(figsize=(8.5, 4))
sns.barplot(acc, x="model", y="accuracy", hue="asked as", ax=ax,
            palette={"multiple choice": "#4C72B0", "generation": "#C44E52"})
ax.set_ylim(0, 1)
ax.set_xlabel("")
ax.set_title("The same 56 facts: multiple choice vs free generation")
plt.xticks(rotation=15)
plt.show()
pd.DataFrame(asked).T.round(3)

# %% [markdown]
# Read the bars in pairs. Where pruning does real damage (Wanda at 50%, four MLP sublayers
# dropped), multiple-choice accuracy slips a little while generation accuracy collapses: the model still *ranks* the right answer first among four, but can no longer
# *produce* it. Dropping 8 attention sublayers, the gentlest cut in our perplexity figure,
# leaves both nearly untouched on this model.
#
# Why should one way of asking survive what breaks the other? Hidden states barely move, the
# softmax amplifies what small changes reach the logits, and decoding compounds each mistake.
# That is the story of this series (He et al., 2026), told one space at a time from notebook 02.

# %%
a = pd.DataFrame(asked).T
mc0, gen0 = a.loc["dense", "multiple choice"], a.loc["dense", "generation"]


def relative_drop(name, col, ref):
    return 1 - a.loc[name, col] / ref


for name in ("Wanda 50%", "4 MLP dropped"):
    gen_drop, mc_drop = relative_drop(name, "generation", gen0), relative_drop(name, "multiple choice", mc0)
    print(f"{name}: multiple choice loses {mc_drop:.0%} of its accuracy, generation {gen_drop:.0%}")
    assert gen_drop > 0.5, f"{name}: generation accuracy should fall by more than half"
    assert mc_drop < 0.5 * gen_drop, f"{name}: multiple choice should lose far less than generation"
assert abs(a.loc["8 attn dropped", "multiple choice"] - mc0) <= 0.10, \
    "8 dropped attention sublayers: multiple choice should stay within 10 points of dense"
assert abs(a.loc["8 attn dropped", "generation"] - gen0) <= 0.10, \
    "8 dropped attention sublayers: on this model generation also stays within 10 points"
assert fingerprint(model) == DENSE_FINGERPRINT

# %% [markdown]
# ## Exercises
#
# **Exercise 1 · a random baseline** (★☆☆, about 10 minutes). Any pruning method should beat
# removing weights at random. Write `random_prune(model, sparsity, seed)` that zeros a random
# `sparsity` fraction of every row of the seven linear maps of every layer (keep clones so you
# can restore them), and compare its perplexity at 50% with magnitude and Wanda from the table
# above. Is random worse than magnitude? Does that surprise you?
#
# <details><summary>Solution</summary>
#
# ```python
# import contextlib
#
# @contextlib.contextmanager
# def random_pruned(model, sparsity, seed=0):
#     g = torch.Generator().manual_seed(seed)
#     saved = []
#     try:
#         with torch.no_grad():
#             for i in range(A.n_layers):
#                 for lin in A.linears(i).values():
#                     w = lin.weight
#                     saved.append((w, w.clone()))
#                     k = round(sparsity * w.shape[1])
#                     idx = torch.rand(w.shape, generator=g).argsort(dim=1)[:, :k]
#                     w.scatter_(1, idx, 0.0)
#         yield
#     finally:
#         with torch.no_grad():
#             for w, c in saved:
#                 w.copy_(c)
#
# with random_pruned(model, 0.5):
#     print("random 50%:", ppl(model))
# print("magnitude 50%:", at["magnitude", 0.5], " Wanda 50%:", at["wanda", 0.5])
# assert fingerprint(model) == DENSE_FINGERPRINT
# ```
#
# Random pruning at 50% is far worse than magnitude (perplexity in the thousands or more):
# magnitude is a weak criterion on this model, but not a useless one.
# </details>
#
# **Exercise 2 · predict the drop** (★★☆, about 10 minutes). Look only at the importance figure
# of section 3. Which four attention sublayers will `pruned(model, "drop-attn", n=4)` drop? Which
# four blocks will `"drop-block"` drop? Write your guesses down, then check with `res.dropped`.
# Then drop your own choice of four blocks, for example the four *most* important ones after
# block 0, and compare perplexities.
#
# <details><summary>Solution</summary>
#
# ```python
# for method in ("drop-attn", "drop-block"):
#     with helpers.pruned(model, method, n=4) as res:
#         print(method, res.dropped, f"ppl {ppl(model):.1f}")
# most = sorted(imp["block"].drop(index=0).nlargest(4).index.tolist())
# with helpers.pruned(model, "drop-block", layers=most) as res:
#     print("most important blocks", res.dropped, f"ppl {ppl(model):.1f}")
# ```
#
# The ranking picks the lowest points of each curve: a few late attention sublayers and a run of
# middle blocks. Dropping the most important blocks instead sends perplexity up by orders of
# magnitude, which is the evidence that the importance score measures something real.
# </details>
#
# **Exercise 3 · combine the families** (★★☆, about 10 minutes). `pruned` blocks nest: inner
# blocks prune the model the outer block left. Drop 8 attention sublayers *and* prune the rest to
# 30% with Wanda. Is the perplexity cost close to the sum of the two separate costs?
#
# <details><summary>Solution</summary>
#
# ```python
# with helpers.pruned(model, "drop-attn", layers=least_important("attn", 8)):
#     with helpers.pruned(model, "wanda", sparsity=0.3, calibration=calib_ids) as res:
#         print(res)
#         print(f"both: {ppl(model):.1f}")
# assert fingerprint(model) == DENSE_FINGERPRINT
# ```
#
# Wanda leaves the dropped attention maps alone (they see no inputs; the report's note says so)
# and calibrates the rest on the activations of the already-dropped model. The two increases in
# perplexity roughly add up: the two families remove different things.
# </details>

# %% [markdown]
# ## Summary
#
# - Intra-layer pruning zeros weights inside the seven linear maps of every layer. Which weights
#   matters: scoring by $\lvert W\rvert \cdot \lVert X\rVert$ (Wanda) or by second-order
#   reconstruction with a weight update (SparseGPT) keeps 50% sparsity usable where plain
#   magnitude does not.
# - Inter-layer pruning removes whole sublayers. By $1 - \cos(x, x + f(x))$, most attention
#   sublayers turn the residual stream less than the MLP sublayers, and dropping them costs the
#   least.
# - On a CPU, zeros in dense matrices buy nothing: same memory, same FLOPs, same time. Dropped
#   sublayers save real compute.
# - The same facts survive as multiple choice but collapse as free generation once pruning
#   bites.
#
# **Next: 02 · hooking representation spaces.** We open the pruned model up and follow the
# perturbation through every layer, in the hidden states $h$, the logits $z$ and the
# probabilities $p$, to see *where* a pruned model starts to differ from the dense one.
