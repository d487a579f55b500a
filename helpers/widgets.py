r"""An interactive explorer of softmax amplification, and a static figure of the same thing.

Start from real dense hidden states ``h`` (the residual stream after the last layer, before the
final norm), push them a little, ``h' = h + Δh``, and follow the change through the hierarchy:

.. math:: z = W_U \cdot \mathrm{norm}(h), \qquad p = \mathrm{softmax}(z / T).

Three knobs: the relative size :math:`\varepsilon = \|Δh\| / \|h\|` of the push, the temperature
``T``, and the *peakedness* of ``p`` (which prompt: they are sorted from the flattest dense ``p`` to
the most peaked, by the top-1 probability at ``T = 1``). The explorer shows, live, ``1 - cos`` in
h, z and p and ``KL(p‖p')``, each beside its second-order estimate (He et al., 2026; see
:mod:`helpers.metrics`), and the top tokens before and after.

* :func:`softmax_explorer` builds the ipywidgets explorer (needs a running kernel to move);
* :func:`explorer_figure` draws a static summary for rendered pages (HTML, PDF);
* :func:`deviations` is the computation both use, usable on its own.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from . import metrics as M
from .architectures import arch as _arch
from .perturb import measure
from .plots import SPACE_COLORS

__all__ = ["deviations", "random_directions", "softmax_explorer", "explorer_figure", "peakedness_order"]


def _check_h(h: torch.Tensor, model) -> torch.Tensor:
    d = model.get_input_embeddings().embedding_dim
    if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[-1] != d:
        raise ValueError(f"h must be a [n_prompts, {d}] tensor of hidden states (e.g. "
                         f"trace.h(site)[:, 0] at the last resid_post site); got "
                         f"{getattr(h, 'shape', type(h).__name__)}.")
    return h


def random_directions(h: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One random Gaussian direction per row of ``h`` (unit norm, float32, reproducible)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(h.shape, generator=g).to(h.device)
    return u / u.norm(dim=-1, keepdim=True)


def _unit(direction: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    if direction.shape != h.shape:
        raise ValueError(f"a direction must have the shape of h {tuple(h.shape)}, got "
                         f"{tuple(direction.shape)}.")
    n = direction.norm(dim=-1, keepdim=True)
    if (n == 0).any():
        raise ValueError("a direction has a zero row: give a non-zero Δh for every prompt.")
    return (direction / n).to(h.dtype)


@torch.no_grad()
def deviations(model, h: torch.Tensor, size, T: float = 1.0, *,
               direction: torch.Tensor | None = None, seed: int = 0) -> pd.DataFrame:
    r"""Push ``h`` by a relative amount ``size`` along ``direction`` and measure every space.

    ``h' = h + ε · ‖h‖ · u`` with ``u = direction / ‖direction‖`` per row (default: a random
    direction, :func:`random_directions`), for ``ε`` = ``size`` (a number or a sequence of them).
    Returns :func:`helpers.perturb.measure` of ``z = lens(h)``, ``z' = lens(h')`` at temperature
    ``T`` (with ``h`` and ``h'``): one row per (size, prompt) with ``size``, ``prompt``, ``one_minus_cos_h``,
    ``one_minus_cos_z``, ``one_minus_cos_p``, ``kl`` and their ``*_est``, ``p_max``, ``top1``. All in one batch.
    """
    h = _check_h(h, model)
    sizes = np.atleast_1d(np.asarray(size, dtype=float))
    if sizes.ndim != 1 or not (sizes >= 0).all():
        raise ValueError(f"size (||Δh|| / ||h||) must be a number >= 0 or a list of them, got {size!r}.")
    u = _unit(direction if direction is not None else random_directions(h, seed), h)
    lens = _arch(model).logits
    eps = torch.as_tensor(sizes, dtype=h.dtype, device=h.device)[:, None, None]
    hp = (h + eps * h.norm(dim=-1, keepdim=True) * u)            # [S, n, d]
    hh = h.expand_as(hp)
    df = measure(lens(hh), lens(hp), T, h=hh, h_pruned=hp)
    df["size"] = np.repeat(sizes, h.shape[0])
    df["prompt"] = np.tile(np.arange(h.shape[0]), len(sizes))
    return df


def peakedness_order(model, h: torch.Tensor) -> np.ndarray:
    """Indices of the rows of ``h`` from the flattest to the most peaked dense ``p`` (top-1 prob, T=1)."""
    with torch.no_grad():
        pmax = M.log_softmax(_arch(model).logits(_check_h(h, model)), 1.0).exp().max(-1).values
    return np.argsort(pmax.cpu().numpy(), kind="stable")


_BARS = [("one_minus_cos_h", "1−cos h", "h"), ("one_minus_cos_z", "1−cos z", "z"), ("one_minus_cos_p", "1−cos p", "p"),
         ("kl", "KL(p‖p′)", "p")]


def _draw(ax_bars, ax_tok, model, h_row, u_row, size, T, tokenizer=None, label=None, k=8):
    """Draw one state of the explorer into two axes (bars of the distances; top tokens)."""
    lens = _arch(model).logits
    hp = h_row + size * h_row.norm() * u_row
    z, zp = lens(h_row[None]), lens(hp[None])
    row = measure(z, zp, T, h=h_row[None], h_pruned=hp[None]).iloc[0]
    floor = 1e-12
    xs = np.arange(len(_BARS))
    vals = [max(row[c], floor) for c, _, _ in _BARS]
    ests = [max(row[c + "_est"], floor) for c, _, _ in _BARS]
    ax_bars.bar(xs, vals, color=[SPACE_COLORS[s] for _, _, s in _BARS], width=0.6, label="measured")
    ax_bars.scatter(xs, ests, marker="_", s=900, color="black", zorder=3, linewidths=2.5,
                    label="2nd-order estimate")
    ax_bars.set_yscale("log")
    ax_bars.set_ylim(floor * 10, 1e4)
    ax_bars.set_xticks(xs, [name for _, name, _ in _BARS])
    ax_bars.set_title(f"ε = ‖Δh‖/‖h‖ = {size:.3g},  T = {T:.3g}")
    ax_bars.legend(loc="upper left", fontsize=8, ncol=2)
    for x, v in zip(xs, vals):
        ax_bars.annotate(f"{v:.1e}", (x, v), ha="center", va="bottom", fontsize=8)
    # top tokens of p and p'
    p = M.log_softmax(z[0], T).exp()
    pp = M.log_softmax(zp[0], T).exp()
    top = torch.unique(torch.cat([p.topk(k).indices, pp.topk(k).indices]))
    top = top[torch.argsort(-(p[top] + pp[top]))][:k]
    names = ([repr(tokenizer.decode([int(i)])) for i in top] if tokenizer is not None
             else [str(int(i)) for i in top])
    y = np.arange(len(top))
    ax_tok.barh(y - 0.2, p[top].cpu().numpy(), height=0.4, color=SPACE_COLORS["p"], alpha=0.45,
                label="dense p")
    ax_tok.barh(y + 0.2, pp[top].cpu().numpy(), height=0.4, color=SPACE_COLORS["p"], label="perturbed p′")
    ax_tok.set_yticks(y, names, fontsize=8)
    ax_tok.invert_yaxis()
    ax_tok.set_xlim(0, 1)
    ax_tok.set_xlabel("probability")
    ax_tok.legend(loc="lower right", fontsize=8)
    title = f"top-1 p = {float(p.max()):.2f}" + ("" if label is None else f"\n{label[:60]!r}")
    ax_tok.set_title(title, fontsize=9)
    return row


def softmax_explorer(model, h: torch.Tensor, *, labels: Sequence[str] | None = None,
                     tokenizer=None, directions: Mapping[str, torch.Tensor] | None = None,
                     size: float = 0.05, T: float = 1.0, seed: int = 0):
    r"""An ipywidgets explorer: sliders for ``ε = ‖Δh‖/‖h‖``, ``T`` and the peakedness of ``p``.

    Parameters
    ----------
    model: the model whose final norm and unembedding give ``z`` (``helpers.arch(model).logits``).
    h: ``[n, d]`` dense hidden states after the last layer (one row per prompt).
    labels: the prompts' texts, shown with the figure (optional).
    tokenizer: to print the top tokens as text (optional; ids otherwise).
    directions: named ``[n, d]`` directions of ``Δh`` to choose from (each rescaled to size
        ``ε‖h‖``), e.g. ``{"Wanda 50%": h_wanda - h}``; a random direction is always offered.
        The explorer starts on the last one given (or the random one).
    size, T: the initial slider values.

    Returns the widget (display it, or let it be the last expression of a cell). The peakedness
    slider runs over the prompts sorted from the flattest dense ``p`` (0) to the most peaked.
    """
    import ipywidgets as W

    h = _check_h(h, model).detach()
    if labels is not None and len(labels) != h.shape[0]:
        raise ValueError(f"labels has {len(labels)} entries for {h.shape[0]} rows of h.")
    dirs = {"random": random_directions(h, seed)}
    for name, d in (directions or {}).items():
        dirs[name] = _unit(d.detach().to(h.device), h)
    order = peakedness_order(model, h)

    w_size = W.FloatLogSlider(value=size, base=10, min=-3, max=0, step=0.05,
                              description="ε = ‖Δh‖/‖h‖", readout_format=".3f",
                              style={"description_width": "initial"})
    w_T = W.FloatLogSlider(value=T, base=10, min=-1, max=1, step=0.05, description="T",
                           readout_format=".2f")
    w_peak = W.IntSlider(value=len(order) // 2, min=0, max=len(order) - 1,
                         description="peakedness", continuous_update=False)
    w_dir = W.Dropdown(options=list(dirs), value=list(dirs)[-1], description="Δh direction",
                       style={"description_width": "initial"})

    def show(size, T, peak, direction):
        i = int(order[peak])
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
        with torch.no_grad():
            _draw(a, b, model, h[i], dirs[direction][i], size, T, tokenizer,
                  None if labels is None else labels[i])
        fig.tight_layout()
        plt.show()

    out = W.interactive_output(show, {"size": w_size, "T": w_T, "peak": w_peak, "direction": w_dir})
    controls = W.VBox([W.HBox([w_size, w_T]), W.HBox([w_peak, w_dir])])
    return W.VBox([controls, out])


@torch.no_grad()
def explorer_figure(model, h: torch.Tensor, *, sizes: Sequence[float] | None = None, T: float = 1.0,
                    direction: torch.Tensor | None = None, labels: Sequence[str] | None = None,
                    direction_name: str | None = None, seed: int = 0):
    r"""Static summary of the explorer: ``1 − cos`` in h, z, p and KL against ``ε = ‖Δh‖/‖h‖``.

    Three panels, for the flattest, the median and the most peaked dense ``p`` among the rows of
    ``h``; solid lines are measured, dashed lines the second-order estimates. ``direction_name``
    goes into the title. Returns the figure.
    """
    h = _check_h(h, model)
    sizes = np.logspace(-3, 0, 13) if sizes is None else np.asarray(sizes, dtype=float)
    u = _unit(direction, h) if direction is not None else random_directions(h, seed)
    order = peakedness_order(model, h)
    picks = {"flattest p": order[0], "median p": order[len(order) // 2], "most peaked p": order[-1]}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    rows = [int(i) for i in picks.values()]
    all_df = deviations(model, h[rows], sizes, T, direction=u[rows])
    for j, (ax, (name, i)) in enumerate(zip(axes, picks.items())):
        df = all_df[all_df["prompt"] == j]
        for col, lab, space in _BARS:
            ls = ":" if col == "kl" else "-"
            ax.plot(df["size"], df[col].clip(lower=1e-16), ls, color=SPACE_COLORS[space],
                    label=f"{lab} measured", lw=2)
            ax.plot(df["size"], df[col + "_est"].clip(lower=1e-16), "--", color=SPACE_COLORS[space],
                    alpha=0.6, lw=1)
        pmax = float(df["p_max"].iloc[0])
        title = f"{name} (top-1 p = {pmax:.2f})"
        if labels is not None:
            title += f"\n{labels[i][:45]!r}"
        ax.set(xscale="log", yscale="log", xlabel="ε = ‖Δh‖ / ‖h‖", title=title)
        ax.title.set_fontsize(9)
    axes[0].set_ylabel("distance")
    axes[0].set_ylim(1e-10, 10)
    axes[-1].legend(fontsize=8, loc="lower right")
    name = direction_name or ("the given direction" if direction is not None else "a random direction")
    fig.suptitle(f"Pushing h along {name}, T = {T:g} (dashed: second-order estimates)")
    fig.tight_layout()
    return fig
