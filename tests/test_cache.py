"""The result cache: keys that see every input, atomic checked entries, and pruning served from it
with the same weights and the same exact restore."""
import pytest
import torch

import helpers
from conftest import V, tiny_llama
from helpers import cache


@pytest.fixture()
def on():
    cache.set_enabled(True)
    yield
    cache.set_enabled(False)


def _counter():
    calls = []

    @cache.cached(namespace="test.f")
    def f(model, ids, *, scale=1.0, progress=False):
        calls.append(1)
        with torch.no_grad():
            return model(input_ids=ids).logits.sum().item() * scale

    return f, calls


def test_hit_miss_on_every_input(on):
    model = tiny_llama(seed=1)
    ids = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(0))
    f, calls = _counter()
    a = f(model, ids)
    assert f(model, ids) == a and len(calls) == 1                      # hit
    f(model, ids, progress=True)
    assert len(calls) == 1                                             # ignored argument
    f(model, ids, scale=2.0)
    assert len(calls) == 2                                             # option changed
    f(model, ids + 1)
    assert len(calls) == 3                                             # data changed
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    f(model, ids)
    assert len(calls) == 4                                             # weights changed
    with helpers.pruned(model, "drop-attn", layers=[1]):
        f(model, ids)
        assert len(calls) == 5                                         # a dropped sublayer changes the state
    with cache.disabled():
        f(model, ids)
    assert len(calls) == 6


def test_corrupt_entry_is_recomputed_not_trusted(on):
    model = tiny_llama(seed=2)
    ids = torch.randint(0, V, (1, 4), generator=torch.Generator().manual_seed(0))
    f, calls = _counter()
    want = f(model, ids)
    (entry,) = list((cache.results_dir() / "test.f").glob("*.pkl"))
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0xFF
    entry.write_bytes(bytes(data))
    before = cache.stats()["corrupt"]
    assert f(model, ids) == want and len(calls) == 2 and cache.stats()["corrupt"] == before + 1
    assert not list((cache.results_dir() / "test.f").glob("*.tmp"))   # written atomically


def test_off_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path / "r"))
    monkeypatch.setenv(cache.ENV_SWITCH, "0")
    cache.set_enabled(None)
    f, calls = _counter()
    model = tiny_llama(seed=3)
    ids = torch.randint(0, V, (1, 4))
    f(model, ids), f(model, ids)
    assert len(calls) == 2 and not (tmp_path / "r").exists()


def test_foreign_hooks_bypass(on):
    model = tiny_llama(seed=4)
    ids = torch.randint(0, V, (1, 4))
    f, calls = _counter()
    h = model.model.layers[0].register_forward_hook(lambda m, a, o: None)
    try:
        f(model, ids), f(model, ids)
    finally:
        h.remove()
    assert len(calls) == 2


@pytest.mark.parametrize("method,opts", [("wanda", {"sparsity": 0.5}), ("sparsegpt", {"pattern": "2:4"}),
                                         ("drop-mlp", {"n": 2})])
def test_pruning_from_the_cache_is_identical(on, method, opts):
    model = tiny_llama(seed=5)
    calib = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(1))
    dense = {k: v.clone() for k, v in model.state_dict().items()}

    def run():
        with helpers.pruned(model, method, calibration=calib, **opts) as res:
            return {k: v.clone() for k, v in model.state_dict().items()}, res

    first, r1 = run()
    misses = cache.stats()["misses"]
    second, r2 = run()
    assert all(torch.equal(first[k], second[k]) for k in first) and r1.dropped == r2.dropped
    if method != "drop-mlp":
        assert any("result cache" in n for n in r2.notes)
    else:
        assert cache.stats()["misses"] == misses               # the importance came from the cache
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())
    other = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(2))
    with helpers.pruned(model, method, calibration=other, **opts) as r3:
        assert not any("result cache" in n for n in r3.notes)  # other calibration text: a miss


def test_function_arguments_bypass_the_cache(on):
    calls = []

    @cache.cached(namespace="test.g")
    def g(x, fn):
        calls.append(1)
        return fn(x)

    assert g(2, lambda v: v + 1) == 3 and g(2, lambda v: v * 10) == 20 and len(calls) == 2
