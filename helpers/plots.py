"""One look for every figure of the series (a seaborn theme and a fixed palette)."""
from __future__ import annotations

import seaborn as sns

__all__ = ["SPACE_COLORS", "METHOD_COLORS", "set_theme", "palette"]

#: colours of the three representation spaces, used everywhere h, z and p appear together
SPACE_COLORS = {"h": "#4C72B0", "z": "#DD8452", "p": "#C44E52"}
#: colours of the pruning methods
METHOD_COLORS = {
    "dense": "#333333", "magnitude": "#8172B3", "wanda": "#55A868", "sparsegpt": "#4C72B0",
    "random": "#937860", "drop-attn": "#DD8452", "drop-mlp": "#C44E52", "drop-block": "#DA8BC3",
}


def set_theme(context: str = "notebook") -> None:
    """The series' seaborn theme: white grid, colour-blind palette, readable sizes."""
    sns.set_theme(context=context, style="whitegrid", palette="colorblind",
                  rc={"figure.figsize": (7.5, 4.2), "figure.dpi": 110, "axes.titleweight": "bold",
                      "axes.spines.right": False, "axes.spines.top": False,
                      "savefig.bbox": "tight"})


def palette(keys) -> dict:
    """Colours for a list of method or space names (falls back to the seaborn palette)."""
    base = sns.color_palette("colorblind", n_colors=max(len(list(keys)), 1))
    return {k: SPACE_COLORS.get(k, METHOD_COLORS.get(k, base[i % len(base)]))
            for i, k in enumerate(keys)}
