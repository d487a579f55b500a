"""The options of :func:`helpers.pruned`, checked before anything changes."""
from __future__ import annotations

import math
import numbers
import re

from ..architectures import arch

__all__ = ["DROP_METHODS", "INTRA_METHODS", "METHODS", "N_SAMPLES", "PruningError", "SCOPES",
           "SEQ_LEN", "check", "parse_pattern"]

INTRA_METHODS = ("magnitude", "wanda", "sparsegpt")
DROP_METHODS = {"drop-attn": ("attn",), "drop-mlp": ("mlp",), "drop-block": ("attn", "mlp")}
METHODS = INTRA_METHODS + tuple(DROP_METHODS)
#: where magnitude pruning draws its threshold: one per weight matrix (the references) or per row
SCOPES = ("matrix", "row")

#: default calibration size: 16 sequences of 128 tokens (2,048 tokens), measured to keep Wanda
#: at a few seconds and SparseGPT well under a minute for SmolLM2-135M on two CPU cores
N_SAMPLES = 16
SEQ_LEN = 128


class PruningError(ValueError):
    """A bad option for :func:`pruned` (raised before the model is changed)."""


def _exactly_one(method: str, a: tuple[str, object], b: tuple[str, object], what: str) -> None:
    """Raise unless exactly one of two mutually exclusive options is given."""
    if (a[1] is None) == (b[1] is None):
        raise PruningError(f"{method!r} needs exactly one of {a[0]}= {what}.")


def parse_pattern(pattern) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``: keep N of every M consecutive weights."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern) if isinstance(pattern, str) else None
    if not m:
        raise PruningError(f"pattern must be a string 'N:M' such as '2:4' or '4:8'; got {pattern!r}.")
    n, m_ = int(m.group(1)), int(m.group(2))
    if not 1 <= n < m_:
        raise PruningError(f"pattern 'N:M' keeps N of every M weights, so it needs 1 <= N < M; got {pattern!r}.")
    return n, m_


def check(model, method, sparsity, pattern, n, layers, extra) -> dict:
    """Validate every option; return the normalised plan (with the model's ``arch``). Changes nothing."""
    if method not in METHODS:
        raise PruningError(f"Unknown pruning method {method!r}; choose one of {', '.join(METHODS)}.")
    A = arch(model)  # raises UnsupportedModelError for an architecture the series does not know
    plan = {"arch": A}
    if any(lin.weight.is_meta for i in range(A.n_layers) for lin in A.linears(i).values()):
        raise PruningError("Some weights are offloaded (on the 'meta' device, kept by accelerate "
                           "elsewhere), so they cannot be pruned in place. Load the model with a "
                           "device_map that keeps every layer on a real device (no 'disk' or CPU "
                           "offload), or with a smaller dtype (dtype='bfloat16').")
    scope = extra.get("scope")
    if scope is not None and method != "magnitude":
        raise PruningError(f"scope= belongs to magnitude pruning; {method!r} chooses its mask "
                           f"{'per row' if method == 'wanda' else 'per 128-column block'}.")
    if method in INTRA_METHODS:
        if n is not None or layers is not None:
            raise PruningError(f"n= and layers= belong to the drop methods; {method!r} takes "
                               f"sparsity= or pattern=.")
        _exactly_one(method, ("sparsity", sparsity), ("pattern", pattern),
                     "(a fraction in [0, 1)) or pattern= ('N:M', e.g. '2:4')")
        if sparsity is not None:
            if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or \
                    not math.isfinite(sparsity) or not 0 <= sparsity < 1:
                raise PruningError(f"sparsity must be a number in [0, 1) (the fraction of weights "
                                   f"to zero); got {sparsity!r}.")
            plan["sparsity"], plan["nm"] = float(sparsity), None
            if method == "magnitude":
                if scope is not None and scope not in SCOPES:
                    raise PruningError(f"scope must be one of {SCOPES}; got {scope!r}.")
                plan["scope"] = scope or "matrix"
        else:
            if scope is not None:
                raise PruningError("scope= applies to unstructured sparsity; an N:M pattern is "
                                   "chosen within each group of M weights.")
            keep, m = parse_pattern(pattern)
            bad = sorted({lin.in_features for i in range(A.n_layers)
                          for lin in A.linears(i).values() if lin.in_features % m})
            if bad:
                raise PruningError(f"pattern {pattern!r}: M={m} must divide the input width of "
                                   f"every linear map, but these widths are not divisible: {bad}.")
            plan["sparsity"], plan["nm"] = None, (keep, m)
        bs, damp = extra["blocksize"], extra["damp"]
        if not (isinstance(bs, int) and bs >= 1):
            raise PruningError(f"blocksize must be a positive int; got {bs!r}.")
        if not (isinstance(damp, (int, float)) and damp > 0):
            raise PruningError(f"damp must be > 0; got {damp!r}.")
    else:
        if sparsity is not None or pattern is not None:
            raise PruningError(f"sparsity= and pattern= belong to the intra-layer methods; "
                               f"{method!r} takes n= (how many) or layers= (which).")
        _exactly_one(method, ("n", n), ("layers", layers),
                     "(drop the n least important) or layers= (a list of layer indices)")
        L = A.n_layers
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= L:
                raise PruningError(f"n must be an int in [0, {L}] (the model has {L} layers); got {n!r}.")
        else:
            if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
                layers = [layers]
            try:
                layers = list(layers)
            except TypeError:
                raise PruningError(f"layers must be a list of layer indices; got {layers!r}.") from None
            if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in layers):
                raise PruningError(f"layers must be ints; got {layers!r}.")
            layers = [int(i) for i in layers]
            out = [i for i in layers if not 0 <= i < L]
            if out:
                raise PruningError(f"layer indices {out} are out of range: the model has {L} layers "
                                   f"(0 .. {L - 1}).")
            if len(set(layers)) != len(layers):
                raise PruningError(f"layers contains duplicates: {layers}.")
            plan["layers"] = sorted(layers)
    for key in ("n_samples", "seq_len"):
        v = extra[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "n_samples" else 2):
            raise PruningError(f"{key} must be an int >= {1 if key == 'n_samples' else 2}; got {v!r}.")
    return plan
