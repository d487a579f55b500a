"""Models placed by accelerate's device_map: tracing and pruning work, and offloaded weights are
refused with a clear error before anything changes. (Tiny models on the CPU: no GPU needed.)"""
import pytest
import torch

import helpers
from conftest import V, tiny_llama


def _dispatched(model):
    """The same model dispatched by accelerate over a layer-wise device map (all on the CPU)."""
    accelerate = pytest.importorskip("accelerate")
    dmap = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    dmap.update({f"model.layers.{i}": "cpu" for i in range(len(model.model.layers))})
    return accelerate.dispatch_model(model, device_map=dmap)


def test_trace_and_pruning_on_a_dispatched_model():
    ref = tiny_llama(seed=11)
    model = _dispatched(tiny_llama(seed=11))
    ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(input_ids=ids).logits
    tr = helpers.trace(model, None, ids)
    torch.testing.assert_close(tr.output_logits(), want[:, -1:], rtol=1e-5, atol=1e-5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method, opts in (("wanda", {"sparsity": 0.5, "calibration": ids}),
                         ("drop-attn", {"layers": [1]}), ("magnitude", {"pattern": "2:4"})):
        with helpers.pruned(model, method, **opts), helpers.pruned(ref, method, **opts):
            with torch.no_grad():
                torch.testing.assert_close(model(input_ids=ids).logits, ref(input_ids=ids).logits,
                                           rtol=1e-5, atol=1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_offloaded_weights_are_refused_before_any_change():
    accelerate = pytest.importorskip("accelerate")
    model = accelerate.cpu_offload(tiny_llama(seed=2), execution_device="cpu")
    with pytest.raises(helpers.PruningError, match="offloaded"):
        with helpers.pruned(model, "magnitude", sparsity=0.5):
            pytest.fail("must not run")
