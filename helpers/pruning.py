r"""Pruning a decoder-only language model in place, and putting it back exactly.

One context manager, :func:`pruned`, covers every method the series uses::

    with helpers.pruned(model, "wanda", sparsity=0.5) as result:
        print(result)                      # what was removed
        ...                                # use the pruned model
    # here the dense weights are back, bit for bit (no reloading)

**Intra-layer methods** zero weights of the seven linear maps of every decoder layer
(``q, k, v, o, gate, up, down``; :meth:`helpers.arch.Arch.linears`). Embeddings, norms and the
output head stay dense, as in the Wanda and SparseGPT papers (the head of SmolLM2 *is* the
embedding matrix). For a weight matrix :math:`W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}`
acting on inputs :math:`X \in \mathbb{R}^{d_\text{in} \times N}` (``N`` calibration tokens):

* ``"magnitude"``: score :math:`S_{ij} = |W_{ij}|`; in every output row ``i`` zero the
  ``round(s · d_in)`` lowest scores.
* ``"wanda"`` (Sun et al., 2023): score :math:`S_{ij} = |W_{ij}| \cdot \|X_{j}\|_2`, the norm
  of input feature ``j`` over all calibration tokens; zero the lowest per output row.
* ``"sparsegpt"`` (Frantar & Alistarh, 2023): with the layer Hessian
  :math:`H = \tfrac{2}{N} X X^\top + \lambda I` (:math:`\lambda` = 1% of the mean diagonal), walk
  the columns in blocks of 128; at the start of a block choose the mask by the OBS saliency
  :math:`w_{ij}^2 / [H^{-1}]_{jj}^2` (lowest ``s`` fraction of the block), then for each column
  ``j`` zero the masked weights and spread their error over the columns not yet visited,
  :math:`W_{:,j:} \mathrel{-}= \frac{w_{:,j} - q_{:,j}}{[U]_{jj}} U_{j,j:}` where ``U`` is the
  upper Cholesky factor of :math:`H^{-1}`. Remaining weights change (the "weight update").
* ``pattern="N:M"`` (semi-structured, e.g. ``"2:4"``): in every group of ``M`` consecutive input
  weights of a row keep ``N`` and zero ``M - N`` (lowest scores; for SparseGPT chosen adaptively
  as the columns are processed).

Wanda and SparseGPT are calibrated **layer by layer**, like the reference implementations: the
calibration tokens are embedded once, then decoder layer ``l`` is run on its inputs to collect
the statistics of its linear maps (all seven from the same dense pass of that layer), the layer is
pruned, and the *pruned* layer is run again to produce the inputs of layer ``l + 1``. So the
activations that calibrate a layer have flowed through the already pruned earlier layers.

**Inter-layer methods** (He et al., 2024, "What Matters in Transformers? Not All Attention Is
Needed", LLM-Drop): ``"drop-attn"``, ``"drop-mlp"``, ``"drop-block"`` skip whole attention
sublayers, MLP sublayers, or both sublayers of a decoder block; the residual stream passes through
unchanged. A dropped sublayer's module still runs, but only returns zeros (so hooks placed on it
still fire and read a zero contribution); a dropped attention sublayer writes zeros of the right
shape into the KV cache, so the cache length and positions stay right during generation with
``use_cache=True``. ``n=k`` drops the ``k`` least important by :func:`sublayer_importance`;
``layers=[...]`` names them.

Nesting ``pruned`` blocks on one model is supported (for example Wanda inside ``drop-attn``): each
block keeps a copy of exactly the tensors it changes and restores them when it exits, so blocks
exit in reverse order of entry and every exit restores the state its entry found. Linear maps of a
dropped sublayer are left as they are by an inner Wanda or SparseGPT block (they see no inputs).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import re
import time
import weakref
from typing import Iterator, Sequence

import pandas as pd
import torch
from torch import nn

from .arch import LINEAR_NAMES, Arch, arch

__all__ = [
    "INTRA_METHODS", "DROP_METHODS", "METHODS", "PruningError", "PruneResult", "pruned",
    "sublayer_importance", "sparsity_report", "dropped_sublayers", "calibration_ids",
]

INTRA_METHODS = ("magnitude", "wanda", "sparsegpt")
DROP_METHODS = {"drop-attn": ("attn",), "drop-mlp": ("mlp",), "drop-block": ("attn", "mlp")}
METHODS = INTRA_METHODS + tuple(DROP_METHODS)

#: default calibration size: 16 sequences of 128 tokens (2,048 tokens), measured to keep Wanda
#: at a few seconds and SparseGPT well under a minute for SmolLM2-135M on two CPU cores
N_SAMPLES = 16
SEQ_LEN = 128

# linear maps that read the same input tensor inside a decoder layer (statistics shared)
_INPUT_GROUPS = (
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.o_proj",),
    ("mlp.gate_proj", "mlp.up_proj"),
    ("mlp.down_proj",),
)
_SUBLAYER_OF = {name: ("attn" if name.startswith("self_attn") else "mlp") for name in LINEAR_NAMES}


class PruningError(ValueError):
    """A bad option for :func:`pruned` (raised before the model is changed)."""


# ----------------------------------------------------------------------------- bookkeeping

# model -> stack of active `pruned` blocks (each: dict with "dropped": set of (layer, sublayer))
_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


def dropped_sublayers(model: nn.Module) -> set[tuple[int, str]]:
    """The sublayers that active :func:`pruned` blocks currently skip, as ``{(layer, "attn"|"mlp")}``."""
    out: set[tuple[int, str]] = set()
    for entry in _ACTIVE.get(model, []):
        out |= entry["dropped"]
    return out


@dataclasses.dataclass
class PruneResult:
    """What one :func:`pruned` block removed.

    Attributes
    ----------
    method, options:
        the method and the options it ran with (calibration summarised).
    table:
        :func:`sparsity_report` of the model right after pruning: one row per prunable linear map
        (``layer, name, shape, params, zeros, dropped, removed, sparsity``) plus the total rows
        ``"prunable"`` and ``"all"``.
    dropped:
        for drop methods, the dropped layer indices (ascending); empty otherwise.
    importance:
        the :func:`sublayer_importance` table used to choose ``n`` layers, else ``None``.
    sparsity_prunable, sparsity_all:
        removed / total weights, over the prunable linear maps and over all weights (embeddings,
        norms, head included). A weight counts as removed when it is zero or sits in a dropped
        sublayer.
    seconds:
        wall time the pruning took.
    notes:
        anything worth knowing (e.g. dampening raised for a singular Hessian).
    """

    method: str
    options: dict
    table: pd.DataFrame
    dropped: list[int]
    importance: pd.DataFrame | None
    sparsity_prunable: float
    sparsity_all: float
    params_prunable: int
    params_all: int
    seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def modules(self) -> pd.DataFrame:
        """The per-module rows of :attr:`table` (without the two total rows)."""
        return self.table[self.table["layer"] >= 0]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v is not None)
        lines = [f"PruneResult(method={self.method!r}{', ' + opts if opts else ''}) "
                 f"in {self.seconds:.2f} s"]
        if self.method in DROP_METHODS:
            what = {"drop-attn": "attention sublayers", "drop-mlp": "MLP sublayers",
                    "drop-block": "decoder blocks"}[self.method]
            lines.append(f"  dropped {len(self.dropped)} {what}: {self.dropped}")
        tot = self.table.set_index("name")
        for key, label in (("prunable", "prunable linear weights"), ("all", "all weights")):
            row = tot.loc[key]
            lines.append(f"  {label:<24} {_count(row['params'])}, removed "
                         f"{_count(row['removed'])} ({100 * row['sparsity']:.1f}%)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = __repr__


# ----------------------------------------------------------------------------- reports

def _count(n) -> str:
    n = int(n)
    return f"{n / 1e6:8.2f} M" if n >= 1e6 else f"{n / 1e3:8.1f} k" if n >= 1e3 else f"{n:8d}  "


@torch.no_grad()
def sparsity_report(model: nn.Module) -> pd.DataFrame:
    """Per prunable linear map: how many weights are zero or dropped; plus two total rows.

    Columns: ``layer`` (−1 for the total rows), ``name`` (dotted name inside the layer, or
    ``"prunable"`` / ``"all"`` for the totals), ``shape``, ``params``, ``zeros`` (entries equal to
    0), ``dropped`` (the module sits in a sublayer an active :func:`pruned` block skips),
    ``removed`` (``params`` if dropped else ``zeros``), ``sparsity = removed / params``.

    The ``"prunable"`` row sums the seven linear maps of every layer; the ``"all"`` row counts every
    weight of the model once (tied embedding/head counted once): zeros anywhere, plus the prunable
    weights of dropped sublayers. ``df.attrs["prunable"]`` and ``df.attrs["all"]`` hold the two
    sparsities as floats.
    """
    A = arch(model)
    dropped = dropped_sublayers(model)
    rows = []
    for i in range(A.n_layers):
        for name, lin in A.linears(i).items():
            w = lin.weight
            zeros = int((w == 0).sum())
            is_dropped = (i, _SUBLAYER_OF[name]) in dropped
            rows.append({"layer": i, "name": name, "shape": tuple(w.shape), "params": w.numel(),
                         "zeros": zeros, "dropped": is_dropped,
                         "removed": w.numel() if is_dropped else zeros})
    df = pd.DataFrame(rows)
    p_params, p_zeros, p_removed = (int(df[c].sum()) for c in ("params", "zeros", "removed"))
    prunable_ids = {id(A.linears(i)[n].weight) for i in range(A.n_layers) for n in LINEAR_NAMES}
    a_params = a_zeros = 0
    for p in model.parameters():  # shared (tied) parameters are yielded once
        a_params += p.numel()
        if id(p) not in prunable_ids:
            a_zeros += int((p == 0).sum())
    a_removed = a_zeros + p_removed
    totals = pd.DataFrame([
        {"layer": -1, "name": "prunable", "shape": None, "params": p_params, "zeros": p_zeros,
         "dropped": False, "removed": p_removed},
        {"layer": -1, "name": "all", "shape": None, "params": a_params,
         "zeros": a_zeros + p_zeros, "dropped": False, "removed": a_removed},
    ])
    df = pd.concat([df, totals], ignore_index=True)
    df["sparsity"] = df["removed"] / df["params"]
    df.attrs["prunable"] = p_removed / p_params
    df.attrs["all"] = a_removed / a_params
    return df


# ----------------------------------------------------------------------------- calibration tokens

def _resolve_tokenizer(model, tokenizer):
    if tokenizer is not None:
        return tokenizer
    from .models import tokenizer_for

    tok = tokenizer_for(model)
    if tok is None:
        raise PruningError(
            "No tokenizer: pass tokenizer=... (the model was not loaded with helpers.load_model, "
            "so helpers.tokenizer_for(model) does not know it), or pass token ids as a LongTensor."
        )
    return tok


def calibration_ids(tokenizer, texts: Sequence[str] | torch.Tensor | None = None, *,
                    n_samples: int = N_SAMPLES, seq_len: int = SEQ_LEN,
                    vocab_size: int | None = None) -> torch.Tensor:
    """Token ids ``(n_samples, seq_len)`` for calibration, deterministic.

    Texts (default: :func:`helpers.corpus.load_calibration`) are joined with blank lines into one
    token stream, cut into consecutive windows of ``seq_len`` tokens, and ``n_samples`` windows are
    taken evenly spread over the stream (so every kind of text is represented; no padding). If the
    stream is shorter than ``n_samples`` windows, all windows are used; if it is shorter than one
    window, it is one shorter sequence. A LongTensor is used as given (``(batch, seq)`` or
    ``(seq,)``; every position counts as a real token).
    """
    if isinstance(texts, torch.Tensor):
        ids = texts.unsqueeze(0) if texts.dim() == 1 else texts
        if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32, torch.int64) or ids.numel() == 0:
            raise PruningError(f"calibration token ids must be a non-empty integer tensor of shape "
                               f"(batch, seq); got {tuple(texts.shape)} {texts.dtype}.")
        if vocab_size is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise PruningError(f"calibration token ids must lie in [0, {vocab_size}).")
        return ids.long()
    if texts is None:
        from .corpus import load_calibration

        texts = load_calibration()
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts) or not "".join(texts).strip():
        raise PruningError("calibration must be a non-empty list of texts or a LongTensor of token ids.")
    if not (isinstance(n_samples, int) and n_samples >= 1 and isinstance(seq_len, int) and seq_len >= 2):
        raise PruningError(f"n_samples must be >= 1 and seq_len >= 2 (got {n_samples}, {seq_len}).")
    if tokenizer is None:
        raise PruningError("calibration texts need a tokenizer (pass tokenizer=...).")
    stream = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    n_windows = len(stream) // seq_len
    if n_windows == 0:
        return torch.tensor([stream], dtype=torch.long)
    starts = sorted({round(k * (n_windows - 1) / max(n_samples - 1, 1)) for k in range(min(n_samples, n_windows))})
    if len(starts) < min(n_samples, n_windows):  # rounding collided: take consecutive windows
        starts = list(range(min(n_samples, n_windows)))
    return torch.tensor([stream[s * seq_len:(s + 1) * seq_len] for s in starts], dtype=torch.long)


# ----------------------------------------------------------------------------- importance

def _hidden(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _base(model):
    return getattr(model, "model", model)


@torch.no_grad()
def sublayer_importance(model: nn.Module, tokenizer=None, texts=None, *,
                        n_samples: int = N_SAMPLES, seq_len: int = SEQ_LEN,
                        batch_size: int = 8) -> pd.DataFrame:
    r"""How much each attention sublayer, MLP sublayer and whole block changes the residual stream.

    For a sublayer with residual input ``x`` and output ``x + f(x)`` (LLM-Drop, He et al., 2024):

    .. math:: \mathrm{importance} = 1 - \cos(x, x + f(x)),

    averaged over all calibration tokens. ``attn``: ``x`` = resid_pre, output = resid_mid;
    ``mlp``: resid_mid -> resid_post; ``block``: resid_pre -> resid_post. One forward pass with
    hooks (in batches of ``batch_size`` sequences); nothing is cached between calls.

    ``texts``: a list of strings or a LongTensor of token ids; default the shipped calibration set,
    tokenised by :func:`calibration_ids`. Returns a DataFrame with columns ``layer``,
    ``sublayer`` (``"attn"``, ``"mlp"``, ``"block"``) and ``importance``.
    """
    A = arch(model)
    if not isinstance(texts, torch.Tensor):
        tokenizer = _resolve_tokenizer(model, tokenizer)
    ids = calibration_ids(tokenizer, texts, n_samples=n_samples, seq_len=seq_len,
                          vocab_size=model.get_input_embeddings().num_embeddings)
    return _importance(model, A, ids, batch_size=batch_size)


def _importance(model, A: Arch, ids: torch.Tensor, batch_size: int = 8) -> pd.DataFrame:
    from .metrics import one_minus_cos

    L = A.n_layers
    sums = torch.zeros(L, 3, dtype=torch.float64)
    state: dict = {}
    handles = []

    def pre(i):
        def hook(module, args, kwargs):
            state["pre"] = args[0] if args else kwargs["hidden_states"]
        return hook

    def mid(i):
        def hook(module, args):
            state["mid"] = args[0]
        return hook

    def post(i):
        def hook(module, args, kwargs, out):
            h_pre, h_mid, h_post = state.pop("pre"), state.pop("mid"), _hidden(out)
            sums[i, 0] += one_minus_cos(h_pre, h_mid).sum()
            sums[i, 1] += one_minus_cos(h_mid, h_post).sum()
            sums[i, 2] += one_minus_cos(h_pre, h_post).sum()
        return hook

    try:
        for i, layer in enumerate(A.layers):
            handles.append(layer.register_forward_pre_hook(pre(i), with_kwargs=True))
            handles.append(A.mid_norm(i).register_forward_pre_hook(mid(i)))
            handles.append(layer.register_forward_hook(post(i), with_kwargs=True))
        dev = next(model.parameters()).device
        for b in range(0, ids.shape[0], batch_size):
            _base(model)(input_ids=ids[b:b + batch_size].to(dev), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    mean = (sums / ids.numel()).numpy()
    rows = [{"layer": i, "sublayer": s, "importance": float(mean[i, k])}
            for i in range(L) for k, s in enumerate(("attn", "mlp", "block"))]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- option checks

def _parse_pattern(pattern) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern) if isinstance(pattern, str) else None
    if not m:
        raise PruningError(f"pattern must be a string 'N:M' such as '2:4' or '4:8'; got {pattern!r}.")
    n, m_ = int(m.group(1)), int(m.group(2))
    if not 1 <= n < m_:
        raise PruningError(f"pattern 'N:M' keeps N of every M weights, so it needs 1 <= N < M; got {pattern!r}.")
    return n, m_


def _check(model, method, sparsity, pattern, n, layers, extra) -> dict:
    """Validate every option; return the normalised plan. Changes nothing."""
    if method not in METHODS:
        raise PruningError(f"Unknown pruning method {method!r}; choose one of {', '.join(METHODS)}.")
    A = arch(model)  # raises UnsupportedModelError for an architecture the series does not know
    plan = {"arch": A}
    if method in INTRA_METHODS:
        if n is not None or layers is not None:
            raise PruningError(f"n= and layers= belong to the drop methods; {method!r} takes "
                               f"sparsity= or pattern=.")
        if (sparsity is None) == (pattern is None):
            raise PruningError(f"{method!r} needs exactly one of sparsity= (a fraction in [0, 1)) "
                               f"or pattern= ('N:M', e.g. '2:4').")
        if sparsity is not None:
            if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or \
                    not math.isfinite(sparsity) or not 0 <= sparsity < 1:
                raise PruningError(f"sparsity must be a number in [0, 1) (the fraction of weights "
                                   f"to zero in each row); got {sparsity!r}.")
            plan["sparsity"], plan["nm"] = float(sparsity), None
        else:
            keep, m = _parse_pattern(pattern)
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
        if (n is None) == (layers is None):
            raise PruningError(f"{method!r} needs exactly one of n= (drop the n least important) "
                               f"or layers= (a list of layer indices).")
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


# ----------------------------------------------------------------------------- masks

def _row_mask(score: torch.Tensor, sparsity: float | None, nm: tuple[int, int] | None) -> torch.Tensor:
    """Boolean mask (True = zero this weight) that removes the lowest scores of every row.

    Unstructured: exactly ``round(sparsity * d_in)`` per row. N:M: in each group of M consecutive
    columns, the ``M - N`` lowest.
    """
    rows, cols = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if nm is not None:
        keep, m = nm
        g = score.reshape(rows, cols // m, m)
        idx = torch.topk(g, m - keep, dim=-1, largest=False).indices
        return mask.reshape(rows, cols // m, m).scatter_(-1, idx, True).reshape(rows, cols)
    k = int(round(sparsity * cols))
    if k == 0:
        return mask
    idx = torch.topk(score, k, dim=1, largest=False).indices
    return mask.scatter_(1, idx, True)


# ----------------------------------------------------------------------------- SparseGPT

def _lowest_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` lowest entries of the 1-D ``x`` (ties: lowest index first).

    The k-th value splits the entries; strictly smaller ones are taken, then as many ties as are
    needed. (Faster than ``topk`` for large ``k``.)
    """
    thr = torch.kthvalue(x, k).values
    below = x < thr
    eq = x == thr
    need = k - int(below.sum())
    return below | (eq & (eq.cumsum(0) <= need))


def _sparsegpt(W: torch.Tensor, H: torch.Tensor, row_groups: list[slice], sparsity: float | None,
               nm: tuple[int, int] | None, blocksize: int = 128, damp: float = 0.01,
               notes: list | None = None) -> torch.Tensor:
    """SparseGPT (Frantar & Alistarh, 2023, Algorithm 1) on the rows of ``W`` that share ``H``.

    ``W`` (rows, d_in) may stack several weight matrices that read the same input (q, k, v); the
    column sweep is row-independent, and the unstructured mask is chosen per matrix
    (``row_groups``), so the result equals running each matrix on its own. Returns the new weights
    (float32).
    """
    W = W.clone().float()
    H = H.clone().double()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    lam = damp * torch.mean(torch.diag(H))
    eye = torch.eye(cols, dtype=H.dtype)
    # float32 like the reference implementation; float64, then stronger dampening, if that fails
    for attempt, dtype in enumerate([torch.float32] + [torch.float64] * 5):
        try:
            Hd = (H + lam * eye).to(dtype)
            U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)), upper=True)
            if not torch.isfinite(U).all():
                raise torch.linalg.LinAlgError("non-finite Cholesky factor")
            break
        except torch.linalg.LinAlgError:
            if attempt >= 1:
                lam = lam * 10
                if notes is not None:
                    notes.append(f"SparseGPT: Hessian not positive definite; dampening raised to "
                                 f"{float(lam):.3g}")
    else:
        raise RuntimeError("SparseGPT: the Hessian stays singular even with strong dampening.")
    Hinv = U.float()
    if nm is not None:
        keep, m = nm
        blocksize = max(m, (blocksize // m) * m)
    # Columns of a block are processed as rows of its transpose (contiguous memory). For column j:
    # err = (w_j - q_j) / [U]_jj with q_j = w_j masked; the block's later columns receive
    # -err * U[j, j:]; the rest of the matrix gets the same update once per block (lazy batch).
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        Wt = W[:, i1:i2].T.contiguous()          # (count, rows)
        Errt = torch.zeros_like(Wt)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1).unsqueeze(1)       # (count, 1)
        maskt = torch.zeros_like(Wt, dtype=torch.bool)
        if nm is None:
            saliency = Wt ** 2 / d ** 2
            for g in row_groups:
                sal = saliency[:, g]
                k = int(round(sal.numel() * sparsity))
                if k:
                    maskt[:, g] = _lowest_k(sal.flatten(), k).reshape(sal.shape)
        S = maskt.to(Wt.dtype) / d                # err_j = w_j * S_j
        for i in range(count):
            if nm is not None and i % m == 0:
                sal = Wt[i:i + m] ** 2 / d[i:i + m] ** 2
                idx = torch.topk(sal, m - keep, dim=0, largest=False).indices
                maskt[i:i + m].scatter_(0, idx, True)
                S[i:i + m] = maskt[i:i + m].to(Wt.dtype) / d[i:i + m]
            torch.mul(Wt[i], S[i], out=Errt[i])
            Wt[i:].addr_(Hinv1[i, i:], Errt[i], alpha=-1.0)
        Wt.masked_fill_(maskt, 0.0)              # the pruned weights are exactly zero
        W[:, i1:i2] = Wt.T
        W[:, i2:] -= Errt.T @ Hinv[i1:i2, i2:]
    return W


# ----------------------------------------------------------------------------- layer-wise pass

class _Stop(Exception):
    pass


@torch.no_grad()
def _layer_calls(model, A: Arch, ids: torch.Tensor):
    """The input of decoder layer 0 and the keyword arguments every layer is called with.

    Runs the model with every decoder layer temporarily replaced by the identity (cheap: only the
    embedding, the rotary tables and the masks are computed), recording each call.
    """
    calls: list = []
    saved = []

    def recorder(i, last):
        def fwd(*args, **kwargs):
            hs = args[0] if args else kwargs.pop("hidden_states")
            calls.append((hs, args[1:], kwargs))
            if last:
                raise _Stop
            return hs
        return fwd

    try:
        for i, layer in enumerate(A.layers):
            saved.append(layer.__dict__.get("forward", None))
            layer.forward = recorder(i, i == A.n_layers - 1)
        try:
            _base(model)(input_ids=ids.to(next(model.parameters()).device), use_cache=False)
        except _Stop:
            pass
    finally:
        for layer, old in zip(A.layers, saved):
            if old is None:
                del layer.forward
            else:
                layer.forward = old
    if len(calls) != A.n_layers:
        raise RuntimeError(f"expected {A.n_layers} decoder-layer calls, saw {len(calls)}")
    return calls[0][0], [(a, k) for _, a, k in calls]


@torch.no_grad()
def _calibrated_prune(model, A: Arch, method: str, ids: torch.Tensor, sparsity, nm, *,
                      blocksize: int, damp: float, progress: bool, notes: list, skip: set) -> None:
    """Wanda / SparseGPT, one decoder layer at a time (see the module docstring)."""
    hidden, calls = _layer_calls(model, A, ids)
    unseen: set[tuple[int, str]] = set()
    iterator = range(A.n_layers)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=method, leave=False)
    for i in iterator:
        layer = A.layers[i]
        lins = A.linears(i)
        stats: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        handles = []

        def hook(group_head):
            def fn(module, args):
                x = args[0].reshape(-1, args[0].shape[-1]).float()
                if method == "wanda":
                    s = x.pow(2).sum(0)
                else:
                    s = x.T @ x
                stats[group_head] = stats[group_head] + s if group_head in stats else s
                counts[group_head] = counts.get(group_head, 0) + x.shape[0]
            return fn

        for group in _INPUT_GROUPS:
            handles.append(lins[group[0]].register_forward_pre_hook(hook(group[0])))
        try:
            args, kwargs = calls[i]
            layer(hidden, *args, **kwargs)
        finally:
            for h in handles:
                h.remove()
        for group in _INPUT_GROUPS:
            head = group[0]
            todo = [name for name in group if (i, _SUBLAYER_OF[name]) not in skip]
            if head not in stats or len(todo) < len(group):
                unseen.update((i, _SUBLAYER_OF[name]) for name in group
                              if name not in todo or head not in stats)
                if head not in stats:
                    continue
            if method == "wanda":
                norm = stats[head].sqrt()
                for name in todo:
                    w = lins[name].weight
                    mask = _row_mask(w.abs().float() * norm.unsqueeze(0), sparsity, nm)
                    w.masked_fill_(mask, 0.0)
            else:
                H = 2.0 * stats[head] / counts[head]
                Ws = [lins[name].weight for name in todo]
                sizes = [w.shape[0] for w in Ws]
                bounds = [0] + list(torch.tensor(sizes).cumsum(0).tolist())
                groups = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
                new = _sparsegpt(torch.cat([w.detach() for w in Ws]), H, groups, sparsity, nm,
                                 blocksize=blocksize, damp=damp, notes=notes)
                for w, g in zip(Ws, groups):
                    w.copy_(new[g].to(w.dtype))
        if i + 1 < A.n_layers:  # the pruned layer's output calibrates the next layer
            args, kwargs = calls[i]
            hidden = _hidden(layer(hidden, *args, **kwargs))
    for sub, label in (("attn", "attention"), ("mlp", "MLP")):
        where = sorted(i for i, s in unseen if s == sub)
        if where:
            notes.append(f"the {label} maps of layers {where} saw no inputs (their sublayer is "
                         f"dropped); left unchanged")


# ----------------------------------------------------------------------------- dropping

def _zero_attention(module: nn.Module):
    """A forward for a dropped attention sublayer: contributes zeros, keeps the KV cache in step."""
    head_dim = module.head_dim
    n_kv = module.k_proj.out_features // head_dim
    layer_idx = module.layer_idx

    def forward(*args, **kwargs):
        hs = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cache = kwargs.get("past_key_values", kwargs.get("past_key_value"))
        if cache is not None:
            # Write zeros so that this layer's cache grows like every other layer's: transformers
            # reads the sequence length (positions, masks) from the cache of layer 0 by default.
            z = hs.new_zeros(hs.shape[0], n_kv, hs.shape[1], head_dim)
            cache.update(z, z, layer_idx)
        return hs.new_zeros(hs.shape), None

    return forward


def _zero_mlp(module: nn.Module):
    def forward(x, *args, **kwargs):
        return x.new_zeros(x.shape)

    return forward


# ----------------------------------------------------------------------------- the context manager

@contextlib.contextmanager
def pruned(model: nn.Module, method: str, *, sparsity: float | None = None,
           pattern: str | None = None, calibration=None, tokenizer=None, n: int | None = None,
           layers: Sequence[int] | None = None, n_samples: int = N_SAMPLES, seq_len: int = SEQ_LEN,
           blocksize: int = 128, damp: float = 0.01, progress: bool = False) -> Iterator[PruneResult]:
    """Prune ``model`` in place inside a ``with`` block; restore the dense weights bit for bit on exit.

    Parameters
    ----------
    method:
        ``"magnitude"``, ``"wanda"``, ``"sparsegpt"`` (intra-layer), or ``"drop-attn"``,
        ``"drop-mlp"``, ``"drop-block"`` (LLM-Drop). See the module docstring for the formulas.
    sparsity:
        intra-layer: fraction of weights to zero in each row (magnitude, Wanda; SparseGPT: in each
        128-column block of a matrix), in ``[0, 1)``.
    pattern:
        intra-layer, instead of ``sparsity``: ``"N:M"`` keeps N of every M consecutive input
        weights of a row (``"2:4"``, ``"4:8"``); M must divide every input width.
    calibration:
        texts or a LongTensor ``(batch, seq)`` of token ids (Wanda, SparseGPT, and drop methods
        with ``n=``); default the shipped calibration set (:func:`helpers.corpus.load_calibration`),
        cut into ``n_samples`` sequences of ``seq_len`` tokens by :func:`calibration_ids`.
    tokenizer:
        for calibration texts; default :func:`helpers.tokenizer_for`.
    n, layers:
        drop methods: drop the ``n`` least important sublayers/blocks by
        :func:`sublayer_importance`, or exactly ``layers``.
    blocksize, damp:
        SparseGPT: column block size (128) and dampening as a fraction of the mean Hessian diagonal
        (0.01).
    progress:
        show a tqdm bar over layers for Wanda / SparseGPT.

    Yields
    ------
    PruneResult: what was removed. Every option is checked before anything changes; a bad one
    raises :class:`PruningError` (a ``ValueError``), an unknown architecture
    :class:`helpers.UnsupportedModelError`. On exit, also after an exception inside the block or
    inside the pruning itself, the tensors this block changed are copied back from clones and the
    original forwards are put back.
    """
    extra = {"blocksize": blocksize, "damp": damp, "n_samples": n_samples, "seq_len": seq_len}
    plan = _check(model, method, sparsity, pattern, n, layers, extra)
    A: Arch = plan["arch"]
    needs_calib = method in ("wanda", "sparsegpt") or (method in DROP_METHODS and n is not None)
    ids = None
    if needs_calib:
        tok = None if isinstance(calibration, torch.Tensor) else _resolve_tokenizer(model, tokenizer)
        ids = calibration_ids(tok, calibration, n_samples=n_samples, seq_len=seq_len,
                              vocab_size=model.get_input_embeddings().num_embeddings)
    calib_desc = None if ids is None else f"{ids.shape[0]}x{ids.shape[1]} tokens"
    options = {"sparsity": plan.get("sparsity"), "pattern": pattern, "n": n,
               "layers": list(layers) if isinstance(layers, (list, tuple)) else layers,
               "calibration": calib_desc}
    notes: list[str] = []
    importance = None
    chosen: list[int] = []
    t0 = time.perf_counter()
    if method in DROP_METHODS:  # choose the layers now, still before any change
        subs = DROP_METHODS[method]
        if n is not None:
            importance = _importance(model, A, ids)
            kind = "block" if method == "drop-block" else subs[0]
            ranked = importance[importance["sublayer"] == kind].sort_values(
                ["importance", "layer"], kind="stable")
            chosen = sorted(int(i) for i in ranked["layer"].iloc[:n])
        else:
            chosen = plan["layers"]

    entry = {"dropped": set()}
    stack = _ACTIVE.setdefault(model, [])
    clones: list[tuple[torch.Tensor, torch.Tensor]] = []
    patched: list[tuple[nn.Module, object]] = []
    stack.append(entry)
    try:
        with torch.no_grad():
            if method in INTRA_METHODS:
                for i in range(A.n_layers):
                    for lin in A.linears(i).values():
                        clones.append((lin.weight, lin.weight.detach().clone()))
                skip = dropped_sublayers(model)
                if method == "magnitude":
                    for i in range(A.n_layers):
                        for name, lin in A.linears(i).items():
                            if (i, _SUBLAYER_OF[name]) in skip:
                                continue
                            w = lin.weight
                            w.masked_fill_(_row_mask(w.abs().float(), plan["sparsity"], plan["nm"]), 0.0)
                else:
                    _calibrated_prune(model, A, method, ids, plan["sparsity"], plan["nm"],
                                      blocksize=blocksize, damp=damp, progress=progress,
                                      notes=notes, skip=skip)
            else:
                for i in chosen:
                    for sub in DROP_METHODS[method]:
                        mod = A.layers[i].self_attn if sub == "attn" else A.layers[i].mlp
                        patched.append((mod, mod.__dict__.get("forward", None)))
                        mod.forward = _zero_attention(mod) if sub == "attn" else _zero_mlp(mod)
                        entry["dropped"].add((i, sub))
        seconds = time.perf_counter() - t0
        table = sparsity_report(model)
        tot = table.set_index("name")
        result = PruneResult(
            method=method, options=options, table=table, dropped=list(chosen),
            importance=importance, sparsity_prunable=table.attrs["prunable"],
            sparsity_all=table.attrs["all"], params_prunable=int(tot.loc["prunable", "params"]),
            params_all=int(tot.loc["all", "params"]), seconds=seconds, notes=notes)
        yield result
    finally:
        with torch.no_grad():
            for p, c in reversed(clones):
                p.copy_(c)
        for mod, old in reversed(patched):
            if old is None:
                mod.__dict__.pop("forward", None)
            else:
                mod.forward = old
        clones.clear()
        for k in range(len(stack) - 1, -1, -1):  # by identity: entries may compare equal
            if stack[k] is entry:
                del stack[k]
                break
        if not stack:
            _ACTIVE.pop(model, None)
