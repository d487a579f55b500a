"""helpers.costs on tiny random models: parameter counts, weight memory, FLOPs per token, decoding
time, and the weight fingerprint (equal exactly when the weights are bit-identical)."""
import pytest
import torch

import helpers
from conftest import tiny_llama
from helpers import costs
from helpers.pruning import pruned


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


IDS = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(0))
CALIB = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))


def _linear_flops_per_token(model):
    """2 · d_in · d_out per token for every nn.Linear (the head included): the matmul FLOPs."""
    return sum(2 * m.in_features * m.out_features for m in model.modules()
               if isinstance(m, torch.nn.Linear))


def test_fingerprint_tracks_the_bits(llama):
    before = costs.weight_fingerprint(llama)
    assert before == costs.weight_fingerprint(llama) and len(before) == 16
    with pruned(llama, "magnitude", sparsity=0.5):
        assert costs.weight_fingerprint(llama) != before
    assert costs.weight_fingerprint(llama) == before
    w = helpers.arch(llama).linears(1)["mlp.down_proj"].weight
    with torch.no_grad():
        old = w[0, 0].clone()
        w[0, 0] = torch.nextafter(old, torch.tensor(float("inf")))   # one bit of one weight
        try:
            assert costs.weight_fingerprint(llama) != before
        finally:
            w[0, 0] = old
    assert costs.weight_fingerprint(llama) == before
    other = tiny_llama(seed=1)
    assert costs.weight_fingerprint(other) != before


def test_parameter_counts(llama):
    n = costs.count_parameters(llama)
    total = sum(p.numel() for p in llama.parameters())
    assert n["stored"] == total and n["used"] == n["nonzero"] <= total
    A = helpers.arch(llama)
    prunable = sum(l.weight.numel() for i in range(A.n_layers) for l in A.linears(i).values())
    with pruned(llama, "magnitude", sparsity=0.5):
        m = costs.count_parameters(llama)
        assert m["stored"] == total
        assert m["nonzero"] == pytest.approx(n["nonzero"] - prunable / 2, abs=A.n_layers * 7)
    with pruned(llama, "drop-attn", layers=[1, 2]):
        d = costs.count_parameters(llama)
        attn = sum(p.numel() for i in (1, 2) for p in A.sublayer(i, "attn").parameters())
        assert d["nonzero"] == n["nonzero"] and d["used"] == n["nonzero"] - attn


def test_flops_count_dense_matmuls_and_skip_dropped_sublayers(llama):
    dense = costs.flops_per_token(llama, ids=IDS)
    linear = _linear_flops_per_token(llama)
    # the linear maps are all of it, plus attention's score and value products (small here)
    assert linear <= dense < 1.5 * linear
    with pruned(llama, "magnitude", sparsity=0.5):
        assert costs.flops_per_token(llama, ids=IDS) == dense       # zeros are still multiplied
    A = helpers.arch(llama)
    mlp = sum(2 * l.in_features * l.out_features for name, l in A.linears(2).items()
              if A.sublayer_of(name) == "mlp")
    with pruned(llama, "drop-mlp", layers=[2]):
        assert costs.flops_per_token(llama, ids=IDS) == pytest.approx(dense - mlp)


def test_measure_cost_keys_and_memory(llama):
    c = costs.measure_cost(llama, None, IDS[0, :4], new_tokens=3, repeats=1, flop_ids=IDS)
    assert tuple(c) == costs.COST_COLUMNS
    assert c["weight memory (MB)"] == pytest.approx(4 * sum(p.numel() for p in llama.parameters()) / 1e6)
    assert c["ms per generated token"] > 0
    with pruned(llama, "wanda", sparsity=0.5, calibration=CALIB):
        p = costs.measure_cost(llama, None, IDS[0, :4], flop_ids=IDS, timing=False)
    assert "ms per generated token" not in p
    assert p["weight memory (MB)"] == c["weight memory (MB)"]
    assert p["non-zero params (M)"] < c["non-zero params (M)"]


def test_time_per_token_rejects_bad_input(llama):
    with pytest.raises(ValueError, match="positive"):
        costs.time_per_token(llama, None, IDS[0, :4], new_tokens=0)


def test_public_names():
    assert helpers.measure_cost is costs.measure_cost
    assert helpers.weight_fingerprint is costs.weight_fingerprint
