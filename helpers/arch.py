"""Where things live inside a decoder-only transformer, for the model families the series knows.

Pruning, dropping and tracing all need the same facts about a model: its decoder layers, the
module whose output is the attention sublayer's contribution to the residual stream, the same
for the MLP, the final norm and the unembedding. :func:`arch` gathers them once, from
transformers' own modules (no copied model code), and fails with a clear error for an
architecture it does not know, before anything is changed.

Known families:

* Llama-style (``LlamaForCausalLM``, SmolLM2, Qwen2/3, Mistral): ``x + attn(norm(x))`` then
  ``x + mlp(norm(x))``.
* Gemma 3 (``Gemma3ForCausalLM``): sandwich norms, ``x + post_attn_norm(attn(norm(x)))`` then
  ``x + post_ff_norm(mlp(pre_ff_norm(x)))``, and optional final logit soft-capping.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

__all__ = ["Arch", "UnsupportedModelError", "arch"]

LINEAR_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class UnsupportedModelError(TypeError):
    """The hooks and pruning code do not know this model's architecture."""


@dataclasses.dataclass
class Arch:
    """The parts of one model that the series reads or changes."""

    model: nn.Module
    family: str                 # "llama" or "gemma3"
    layers: nn.ModuleList       # the decoder layers, in order
    final_norm: nn.Module       # norm applied before the unembedding
    lm_head: nn.Linear          # the unembedding W_U
    softcap: float | None       # final logit soft-capping (Gemma), else None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def attn_out(self, i: int) -> nn.Module:
        """Module whose output is what attention adds to the residual stream at layer ``i``."""
        layer = self.layers[i]
        return layer.post_attention_layernorm if self.family == "gemma3" else layer.self_attn

    def mlp_out(self, i: int) -> nn.Module:
        """Module whose output is what the MLP adds to the residual stream at layer ``i``."""
        layer = self.layers[i]
        return layer.post_feedforward_layernorm if self.family == "gemma3" else layer.mlp

    def mid_norm(self, i: int) -> nn.Module:
        """Module whose *input* is the residual stream between attention and MLP (resid_mid)."""
        layer = self.layers[i]
        return layer.pre_feedforward_layernorm if self.family == "gemma3" else layer.post_attention_layernorm

    def linears(self, i: int) -> dict[str, nn.Linear]:
        """The prunable linear maps of layer ``i``, by dotted name inside the layer."""
        layer = self.layers[i]
        return {name: layer.get_submodule(name) for name in LINEAR_NAMES}

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The logit lens: ``z = W_U · norm_final(h)`` (with Gemma's soft-cap when it has one)."""
        z = self.lm_head(self.final_norm(h))
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


def arch(model: nn.Module) -> Arch:
    """Describe ``model`` (a transformers causal LM) or raise :class:`UnsupportedModelError`."""
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    lm_head = getattr(model, "lm_head", None)
    norm = getattr(base, "norm", None)
    if not isinstance(layers, nn.ModuleList) or lm_head is None or norm is None or len(layers) == 0:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a decoder-only model the series knows: expected "
            f"`model.model.layers`, `model.model.norm` and `model.lm_head` (Llama, Qwen, Mistral, "
            f"Gemma 3 families). Add your architecture in helpers/arch.py."
        )
    first = layers[0]
    if all(hasattr(first, a) for a in ("pre_feedforward_layernorm", "post_feedforward_layernorm",
                                        "post_attention_layernorm")):
        family = "gemma3"
    elif hasattr(first, "post_attention_layernorm") and hasattr(first, "input_layernorm"):
        family = "llama"
    else:
        raise UnsupportedModelError(
            f"{type(first).__name__} is a decoder layer the series does not know (it needs "
            f"input_layernorm/self_attn/post_attention_layernorm/mlp). Add it in helpers/arch.py."
        )
    missing = [n for n in LINEAR_NAMES if _missing(first, n)]
    if missing:
        raise UnsupportedModelError(
            f"{type(first).__name__} lacks the linear maps {missing}; the series expects the "
            f"Llama naming (q/k/v/o_proj, gate/up/down_proj)."
        )
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    return Arch(model=model, family=family, layers=layers, final_norm=norm, lm_head=lm_head,
                softcap=softcap)


def _missing(layer: nn.Module, name: str) -> bool:
    try:
        return not isinstance(layer.get_submodule(name), nn.Linear)
    except AttributeError:
        return True
