"""helpers.local_errors: each pruned sublayer run on the dense input, on tiny random models."""
import pytest
import torch

import helpers
from conftest import L, tiny_gemma3, tiny_llama
from helpers import metrics as M
from helpers.pruning import PruningError
from helpers.tracing import site_name

IDS = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _hooks(model):
    return [n for n, m in model.named_modules()
            if m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__]


def _err(df, target="residual", space="h"):
    d = df[(df.target == target) & (df.space == space)]
    return d.set_index(["layer", "sublayer"])["one_minus_cos"]


def test_shape_of_the_table(llama):
    df = helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.5)
    assert list(df.columns[:5]) == ["layer", "sublayer", "target", "space", "n"]
    res, con = df[df.target == "residual"], df[df.target == "contribution"]
    assert len(res) == L * 2 * 3 and len(con) == L * 2 and set(con.space) == {"h"}
    assert (df.n == IDS.shape[0]).all()          # positions=-1: one token per text
    h_only = helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.5, spaces="h")
    assert set(h_only.space) == {"h"}


def test_no_op_pruning_gives_zero_error(llama):
    df = helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.0, positions=None)
    assert df["one_minus_cos"].abs().max() < 1e-12
    assert df["kl"].dropna().abs().max() < 1e-12 and (df["top1"].dropna() == 1).all()


def test_dropping_one_sublayer_errs_only_there(llama):
    df = helpers.local_errors(llama, None, IDS, "drop-attn", layers=[2], positions=None)
    assert df.attrs["dropped"] == [2]
    con = df[df.target == "contribution"].set_index(["layer", "sublayer"])
    assert con.loc[(2, "attn"), "one_minus_cos"] == 1.0            # a'_2 = 0
    assert con.loc[(2, "attn"), "par"] == pytest.approx(1.0)       # Δa = -a: all along a
    others = con.drop(index=(2, "attn"))
    assert others["one_minus_cos"].abs().max() < 1e-12             # every other sublayer: dense input, dense weights
    res = _err(df)
    assert res[(2, "attn")] > 1e-4 and res.drop(index=(2, "attn")).abs().max() < 1e-12


def test_local_differs_from_end_to_end(llama):
    opts = dict(sparsity=0.5)
    local = helpers.local_errors(llama, None, IDS, "magnitude", **opts)
    dense = helpers.trace(llama, None, IDS, sites=["resid_mid", "resid_post"], positions=-1)
    with helpers.pruned(llama, "magnitude", **opts):
        pr = helpers.trace(llama, None, IDS, sites=["resid_mid", "resid_post"], positions=-1)
    e2e = helpers.compare(dense, pr)
    e2e = e2e[e2e.space == "h"].set_index(["layer", "kind"])["one_minus_cos"]
    loc = _err(local)
    # layer 0's attention reads the embedding, which pruning leaves alone: local = end to end
    assert loc[(0, "attn")] == pytest.approx(e2e[(0, "resid_mid")], rel=1e-9)
    # later, the end-to-end error also carries what earlier layers changed
    last = L - 1
    assert abs(loc[(last, "mlp")] - e2e[(last, "resid_post")]) > 0.1 * e2e[(last, "resid_post")]


def test_matches_a_hand_computation(llama):
    """Layer 1's MLP: f' = MLP'(norm(m_1)) on the dense m_1, by hand."""
    A = helpers.arch(llama)
    df = helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.5, positions=-1)
    tr = helpers.trace(llama, None, IDS, sites=None, positions=-1)
    full = helpers.trace(llama, None, IDS, sites=None, positions=None)
    m1 = full.h(site_name(1, "resid_mid"))
    with helpers.pruned(llama, "magnitude", sparsity=0.5):
        with torch.no_grad():
            f2 = A.sublayer(1, "mlp")(A.mid_norm(1)(m1))[:, -1:]
    f = tr.h(site_name(1, "mlp_out"))
    want = float(M.one_minus_cos(f, f2).mean())
    got = df[(df.target == "contribution") & (df.layer == 1) & (df.sublayer == "mlp")]["one_minus_cos"].item()
    assert got == pytest.approx(want, rel=1e-6)
    m = tr.h(site_name(1, "resid_mid"))
    want_res = float(M.one_minus_cos(m + f, m + f2).mean())
    assert _err(df)[(1, "mlp")] == pytest.approx(want_res, rel=1e-6)


def test_hooks_and_weights_restored(llama):
    before = _state(llama)
    helpers.local_errors(llama, None, IDS, "wanda", sparsity=0.5, calibration=IDS)
    assert not _hooks(llama)
    for k, v in llama.state_dict().items():
        assert torch.equal(v, before[k]), k

    class Boom(RuntimeError):
        pass

    import helpers.comparison as C
    real, calls = C.trace, []

    def second_pass_fails(*a, **k):     # the pass inside the pruned, hooked model
        calls.append(1)
        if len(calls) == 2:
            raise Boom
        return real(*a, **k)

    C.trace = second_pass_fails
    try:
        with pytest.raises(Boom):
            helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.5)
    finally:
        C.trace = real
    assert len(calls) == 2
    assert not _hooks(llama)
    for k, v in llama.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_method_raises_before_any_change(llama):
    before = _state(llama)
    with pytest.raises(PruningError):
        helpers.local_errors(llama, None, IDS, "nonsense", sparsity=0.5)
    with pytest.raises(ValueError):
        helpers.local_errors(llama, None, IDS, "magnitude", sparsity=0.5, spaces=("q",))
    assert not _hooks(llama)
    assert all(torch.equal(v, before[k]) for k, v in llama.state_dict().items())


def test_gemma3_sandwich_norms():
    g = tiny_gemma3()
    df = helpers.local_errors(g, None, IDS, "drop-mlp", layers=[1], positions=None)
    res = _err(df)
    assert res[(1, "mlp")] > 1e-4 and res.drop(index=(1, "mlp")).abs().max() < 1e-12
    zero = helpers.local_errors(g, None, IDS, "magnitude", sparsity=0.0)
    assert zero["one_minus_cos"].abs().max() < 1e-12
