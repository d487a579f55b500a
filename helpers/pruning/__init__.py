r"""Pruning a decoder-only language model in place, and putting it back exactly.

One context manager, :func:`pruned`, covers every method the series uses::

    with helpers.pruned(model, "wanda", sparsity=0.5) as result:
        print(result)                      # what was removed
        ...                                # use the pruned model
    # here the dense weights are back, bit for bit (no reloading)

**Intra-layer methods** zero weights of the seven linear maps of every decoder layer
(``q, k, v, o, gate, up, down``; :meth:`helpers.architectures.Arch.linears`). Embeddings, norms and the
output head stay dense, as in the Wanda and SparseGPT papers (the head of SmolLM2 *is* the
embedding matrix). For a weight matrix :math:`W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}`
acting on inputs :math:`X \in \mathbb{R}^{d_\text{in} \times N}` (``N`` calibration tokens):

* ``"magnitude"``: score :math:`S_{ij} = |W_{ij}|`; zero the ``round(s · d_out · d_in)`` lowest
  scores of each weight matrix (``scope="matrix"``, the default, as the Wanda and SparseGPT
  reference implementations), or the ``round(s · d_in)`` lowest of every output row
  (``scope="row"``).
* ``"wanda"`` (Sun et al., 2023): score :math:`S_{ij} = |W_{ij}| \cdot \|X_{j}\|_2`, the norm
  of input feature ``j`` over all calibration tokens; zero the lowest per output row.
* ``"sparsegpt"`` (Frantar & Alistarh, 2023): with the layer Hessian
  :math:`H = \tfrac{2}{N} X X^\top + \lambda I` (:math:`\lambda` = 1% of the mean diagonal) and
  ``U`` the upper Cholesky factor of :math:`H^{-1}`, walk the columns in blocks of 128; at the
  start of a block choose the mask by the OBS saliency :math:`w_{ij}^2 / [U]_{jj}^2` (the lowest
  ``s`` fraction of each matrix's scores *in that block*, so the fraction is fixed per block, not
  per row; :math:`[U]_{jj}^2` is the :math:`[H^{-1}]_{jj}` of the paper's saliency
  :math:`w^2/[H^{-1}]_{jj}` taken over the columns not yet visited, the form the reference code
  uses), then for each column ``j`` zero the masked weights and spread their error over the
  columns not yet visited, :math:`W_{:,j:} \mathrel{-}= \frac{w_{:,j} - q_{:,j}}{[U]_{jj}} U_{j,j:}`.
  Remaining weights change (the "weight update").
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

The package is split along these seams: :mod:`~helpers.pruning.options` (the methods and the
checks of every option), :mod:`~helpers.pruning.masks` (magnitude, Wanda, N:M),
:mod:`~helpers.pruning.sparsegpt`, :mod:`~helpers.pruning.calibration` (token windows and the
layer-by-layer pass), :mod:`~helpers.pruning.drop` (importance and the record of dropped
sublayers), :mod:`~helpers.pruning.report` and :mod:`~helpers.pruning.core` (:func:`pruned`).
"""
from __future__ import annotations

from . import calibration, core, drop, masks, options, report, sparsegpt
from .calibration import calibration_ids
from .core import pruned
from .drop import dropped_sublayers, sublayer_importance
from .options import (DROP_METHODS, INTRA_METHODS, METHODS, N_SAMPLES, SCOPES, SEQ_LEN,
                      PruningError)
from .report import PruneResult, sparsity_report

__all__ = [
    "DROP_METHODS", "INTRA_METHODS", "METHODS", "N_SAMPLES", "PruneResult", "PruningError",
    "SCOPES", "SEQ_LEN", "calibration", "calibration_ids", "core", "drop", "dropped_sublayers",
    "masks", "options", "pruned", "report", "sparsegpt", "sparsity_report", "sublayer_importance",
]
