r"""Confidence intervals for the numbers the notebooks show: accuracies and medians.

An accuracy over ``n`` items is a proportion :math:`\hat p = k / n`; with a few hundred items its
uncertainty is several points, so every accuracy the series plots carries a 95% interval.

* :func:`wilson`: the Wilson score interval for a proportion (Wilson, 1927). With
  :math:`z = \Phi^{-1}(1 - \alpha/2)` (1.96 for 95%),

  .. math::
     \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}
          {1 + \frac{z^2}{n}}.

  Unlike the textbook (Wald) interval :math:`\hat p \pm z\sqrt{\hat p(1-\hat p)/n}` it stays
  inside [0, 1] and does not collapse to a point at :math:`\hat p = 0` or 1.
* :func:`bootstrap`: a percentile bootstrap interval for any statistic (a median KL, a difference
  of accuracies): resample the items with replacement ``n_boot`` times, take the
  :math:`\alpha/2` and :math:`1-\alpha/2` quantiles of the statistic.
* :func:`proportion`: ``k``, ``n``, the accuracy and its Wilson interval from a column of booleans.
* :func:`accuracy_band`: draw accuracy against a pruning level with its Wilson band.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable

import numpy as np

__all__ = ["wilson", "bootstrap", "proportion", "accuracy_band"]


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (0.05 for a 95% interval); got {alpha!r}.")
    return NormalDist().inv_cdf(1 - alpha / 2)


def wilson(k, n, alpha: float = 0.05):
    r"""Wilson score interval ``(lo, hi)`` for ``k`` successes out of ``n`` (formula above).

    ``k`` and ``n`` may be numbers or arrays (broadcast); ``n = 0`` gives ``(0, 1)`` (nothing is
    known). Raises ValueError for ``k < 0``, ``k > n`` or a negative ``n``.
    """
    k_arr, n_arr = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if np.any(n_arr < 0) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError(f"wilson(k, n) needs 0 <= k <= n; got k={k!r}, n={n!r}.")
    z = _z(alpha)
    safe_n = np.where(n_arr > 0, n_arr, 1.0)
    ph = k_arr / safe_n
    den = 1 + z * z / safe_n
    centre = (ph + z * z / (2 * safe_n)) / den
    half = z * np.sqrt(ph * (1 - ph) / safe_n + z * z / (4 * safe_n * safe_n)) / den
    # exact ends: k = 0 gives lo = 0 and k = n gives hi = 1 (the formula, without rounding)
    lo = np.where((n_arr > 0) & (k_arr > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where((n_arr > 0) & (k_arr < n_arr), np.clip(centre + half, 0.0, 1.0), 1.0)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def bootstrap(values, stat: Callable = np.median, *, n_boot: int = 2000, alpha: float = 0.05,
              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval ``(lo, hi)`` of ``stat`` over the items of ``values``.

    ``values``: a 1-D sequence (one number per item), or a 2-D array whose rows are items (then
    ``stat`` receives a resampled ``[n, k]`` array, e.g. for a difference of two columns).
    ``stat`` must reduce along axis 0 when given ``axis=0``-less arrays; :func:`numpy.median`,
    :func:`numpy.mean` work as they are. Deterministic for a fixed ``seed``.
    """
    _z(alpha)
    x = np.asarray(values, dtype=float)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap needs at least one value.")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    stats = np.array([stat(x[i]) for i in idx], dtype=float)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def proportion(correct, alpha: float = 0.05) -> dict:
    """``{"k", "n", "acc", "lo", "hi"}`` for a column of booleans (e.g. ``df["correct"]``)."""
    c = np.asarray(correct, dtype=bool)
    k, n = int(c.sum()), int(c.size)
    lo, hi = wilson(k, n, alpha)
    return {"k": k, "n": n, "acc": k / n if n else math.nan, "lo": lo, "hi": hi}


def accuracy_band(ax, x, k, n, *, alpha: float = 0.05, label=None, color=None, marker="o",
                  band_alpha: float = 0.18, **plot_kw):
    """Plot accuracy ``k / n`` against ``x`` with its Wilson band on the matplotlib axes ``ax``.

    ``x``, ``k`` and ``n`` are sequences of equal length (``n`` may be one number). Returns the
    line. Extra keywords go to ``ax.plot``.
    """
    x = np.asarray(x, dtype=float)
    k = np.asarray(k, dtype=float)
    n = np.broadcast_to(np.asarray(n, dtype=float), k.shape)
    lo, hi = wilson(k, n, alpha)
    (line,) = ax.plot(x, k / n, marker=marker, label=label, color=color, **plot_kw)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=band_alpha, linewidth=0)
    return line
