"""The second family on the real packaged model: Gemma 3 270M (prepared by `make setup`).

Every helper the series uses must work on it: the trace sites after Gemma's extra norms, the logit
lens with its final norm, every pruning method with a bit-exact restore.
"""
import hashlib

import pytest
import torch

import helpers
from helpers.tracing import site_name

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def gemma():
    model, tok = helpers.load_model("gemma3-270m")
    return model, tok


def _digest(model):
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_layout_and_lens(gemma):
    model, tok = gemma
    A = helpers.arch(model)
    assert A.family == "gemma3" and A.n_layers == model.config.num_hidden_layers
    tr = helpers.trace(model, tok, ["The capital of France is", "One, two, three,"], positions=-1)
    last = site_name(A.n_layers - 1, "resid_post")
    torch.testing.assert_close(tr.z(last), tr.output_logits().float(), rtol=1e-4, atol=1e-3)
    # the residual identities hold at every layer, with attn_out/mlp_out taken after the post-norms
    for i in range(A.n_layers):
        torch.testing.assert_close(tr.h(site_name(i, "resid_pre")) + tr.h(site_name(i, "attn_out")),
                                   tr.h(site_name(i, "resid_mid")), rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(tr.h(site_name(i, "resid_mid")) + tr.h(site_name(i, "mlp_out")),
                                   tr.h(site_name(i, "resid_post")), rtol=1e-4, atol=1e-3)
    # the packaged Gemma is the base (pretrained) model: " Paris" is among its first guesses
    assert "Paris" in [tok.decode(i).strip() for i in tr.z(last)[0, -1].topk(5).indices]


@pytest.mark.parametrize("method,opts", [
    ("magnitude", {"sparsity": 0.5}), ("wanda", {"pattern": "2:4"}),
    ("sparsegpt", {"sparsity": 0.5}), ("drop-attn", {"n": 2}), ("drop-mlp", {"layers": [3, 7]}),
    ("drop-block", {"n": 1})])
def test_every_method_restores_bit_exactly(gemma, method, opts):
    model, tok = gemma
    before = _digest(model)
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        dense = model(**enc).logits
    small = {"n_samples": 2, "seq_len": 32} if method in ("wanda", "sparsegpt") or "n" in opts else {}
    with helpers.pruned(model, method, **opts, **small) as res:
        with torch.no_grad():
            changed = model(**enc).logits
        assert res.sparsity_prunable > 0.01
    assert not torch.equal(changed, dense)
    assert _digest(model) == before


def test_generation_with_cache_under_attention_dropping(gemma):
    """Greedy generation with the KV cache equals step-by-step full recomputation while attention
    sublayers of sliding and full layers are dropped."""
    model, tok = gemma
    enc = tok("The days of the week are Monday, Tuesday,", return_tensors="pt")
    with helpers.pruned(model, "drop-attn", layers=[2, 5]):
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
        ids = enc["input_ids"]
        for _ in range(8):
            with torch.no_grad():
                nxt = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
    assert torch.equal(out[0, :ids.shape[1]], ids[0])
