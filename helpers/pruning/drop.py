r"""Dropping whole sublayers (He et al., 2024, "What Matters in Transformers? Not All Attention Is
Needed", LLM-Drop): the importance score that chooses them, and the record of what is dropped now.

For a sublayer with residual input ``x`` and output ``x + f(x)``:
:math:`\mathrm{importance} = 1 - \cos(x, x + f(x))`, averaged over calibration tokens; the ``n``
least important are dropped. The skipping itself is :meth:`helpers.architectures.Arch.skip_sublayer`.
"""
from __future__ import annotations

import weakref

import pandas as pd
import torch
from torch import nn

from ..architectures import Arch, arch
from ..cache import cached
from ..hooks import hooked
from ..models import resolve_tokenizer
from .calibration import calibration_ids
from .options import N_SAMPLES, SEQ_LEN

__all__ = ["choose_layers", "dropped_sublayers", "sublayer_importance"]

# model -> stack of active `pruned` blocks (each: dict with "dropped": set of (layer, sublayer))
_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


def dropped_sublayers(model: nn.Module) -> set[tuple[int, str]]:
    """The sublayers that active :func:`pruned` blocks currently skip, as ``{(layer, "attn"|"mlp")}``."""
    out: set[tuple[int, str]] = set()
    for entry in _ACTIVE.get(model, []):
        out |= entry["dropped"]
    return out


def _hidden(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@cached
@torch.no_grad()
def sublayer_importance(model: nn.Module, tokenizer=None, texts=None, *,
                        n_samples: int = N_SAMPLES, seq_len: int = SEQ_LEN,
                        batch_size: int = 8) -> pd.DataFrame:
    r"""How much each attention sublayer, MLP sublayer and whole block changes the residual stream.

    For a sublayer with residual input ``x`` and output ``x + f(x)`` (LLM-Drop, He et al., 2024):

    .. math:: \mathrm{importance} = 1 - \cos(x, x + f(x)),

    averaged over all calibration tokens. ``attn``: ``x`` = resid_pre, output = resid_mid;
    ``mlp``: resid_mid -> resid_post; ``block``: resid_pre -> resid_post (ShortGPT's block
    importance). One forward pass with hooks (in batches of ``batch_size`` sequences).

    ``texts``: a list of strings or a LongTensor of token ids; default the shipped calibration set,
    tokenised by :func:`calibration_ids`. Returns a DataFrame with columns ``layer``,
    ``sublayer`` (``"attn"``, ``"mlp"``, ``"block"``) and ``importance``.
    """
    A = arch(model)
    if not isinstance(texts, torch.Tensor):
        tokenizer = resolve_tokenizer(model, tokenizer, what="calibration texts")
    ids = calibration_ids(tokenizer, texts, n_samples=n_samples, seq_len=seq_len,
                          vocab_size=model.get_input_embeddings().num_embeddings)
    return importance_of(A, ids, batch_size=batch_size)


@torch.no_grad()
def importance_of(A: Arch, ids: torch.Tensor, batch_size: int = 8) -> pd.DataFrame:
    """:func:`sublayer_importance` on token ids ``[batch, seq]`` (no checks)."""
    from ..metrics import one_minus_cos

    L = A.n_layers
    sums = torch.zeros(L, 3, dtype=torch.float64)
    state: dict = {}

    def pre(module, args, kwargs):
        state["pre"] = args[0] if args else kwargs["hidden_states"]

    def mid(module, args):
        state["mid"] = args[0]

    def post(i):
        def hook(module, args, kwargs, out):
            h_pre, h_mid, h_post = state.pop("pre"), state.pop("mid"), _hidden(out)
            sums[i, 0] += one_minus_cos(h_pre, h_mid).sum()
            sums[i, 1] += one_minus_cos(h_mid, h_post).sum()
            sums[i, 2] += one_minus_cos(h_pre, h_post).sum()
        return hook

    regs = []
    for i, layer in enumerate(A.layers):
        regs += [(layer, "pre", pre, True), (A.mid_norm(i), "pre", mid),
                 (layer, "post", post(i), True)]
    with hooked(regs):
        dev = A.lm_head.weight.device
        for b in range(0, ids.shape[0], batch_size):
            A.base(input_ids=ids[b:b + batch_size].to(dev), use_cache=False)
    mean = (sums / ids.numel()).numpy()
    rows = [{"layer": i, "sublayer": s, "importance": float(mean[i, k])}
            for i in range(L) for k, s in enumerate(("attn", "mlp", "block"))]
    return pd.DataFrame(rows)


def choose_layers(importance: pd.DataFrame, method: str, n: int) -> list[int]:
    """The ``n`` least important layers for a drop method (ties: lower layer first), ascending."""
    kind = {"drop-attn": "attn", "drop-mlp": "mlp", "drop-block": "block"}[method]
    ranked = importance[importance["sublayer"] == kind].sort_values(["importance", "layer"],
                                                                    kind="stable")
    return sorted(int(i) for i in ranked["layer"].iloc[:n])
