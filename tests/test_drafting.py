"""helpers.drafting: the speculative-decoding formulas on known answers, the exact greedy replay,
and the counts of transformers' assisted generation on cases with a known answer (a draft equal to
the dense model accepts everything; a draft that is always wrong accepts nothing; a shrunk draft
accepts exactly what the teacher-forced top-1 agreement predicts)."""
import copy

import numpy as np
import pytest
import torch

import helpers
from conftest import tiny_gemma3, tiny_llama
from helpers import drafting as D
from helpers.shrinking import shrink


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def no_eos(model):
    model.generation_config.eos_token_id = None   # random tiny models: run to max_new_tokens
    return model


PROMPT = torch.tensor([[5, 17, 33, 2 + 40, 9, 11]])


# ----------------------------------------------------------------------------- formulas
def test_expected_tokens_per_pass_known_values():
    assert D.expected_tokens_per_pass(0.0, 4) == 1.0
    assert D.expected_tokens_per_pass(1.0, 4) == 5.0
    assert D.expected_tokens_per_pass(0.5, 2) == pytest.approx(1.75)
    assert D.expected_acceptance_rate(0.5, 2) == pytest.approx(0.375)
    grid = D.expected_tokens_per_pass(np.linspace(0, 1, 11), 3)
    assert np.all(np.diff(grid) > 0) and grid[-1] == 4.0


def test_expected_tokens_per_pass_matches_a_simulation():
    rng = np.random.default_rng(0)
    alpha, gamma, n = 0.7, 4, 200_000
    accept = rng.random((n, gamma)) < alpha
    leading = np.argmin(np.c_[accept, np.zeros((n, 1), bool)], axis=1)   # first rejection
    assert (leading + 1).mean() == pytest.approx(D.expected_tokens_per_pass(alpha, gamma), rel=0.01)


def test_replay_greedy_by_hand():
    # gamma 2: [1 1 | bonus] [0 | bonus] [1 0 | ...]
    agree = [1, 1, 1, 0, 1, 1, 0, 1]
    r = D.replay_greedy(agree, 2)
    # round 1 at t=0: drafts t1,t2 (both agree), bonus t3 -> t=3; round 2: t4 rejected, bonus t4
    # -> t=4; round 3: t5, t6 agree, bonus t7 -> t=7; round 4: one token left, no draft
    assert r["per_round"] == [(2, 2), (2, 0), (2, 2), (0, 0)]
    assert (r["rounds"], r["tokens"], r["accepted"], r["drafted"]) == (4, 8, 4, 6)
    assert D.replay_greedy([1] * 9, 2)["rounds"] == 3
    assert D.replay_greedy([0] * 9, 2)["rounds"] == 9
    # the dense continuation ended early (EOS at token 3, accepted from the draft): one round
    assert D.replay_greedy([1, 1, 1], 4, max_new_tokens=10)["per_round"] == [(4, 2)]
    with pytest.raises(ValueError):
        D.replay_greedy([1] * 5, 2, max_new_tokens=3)


# ----------------------------------------------------------------------------- measured counts
def test_a_draft_equal_to_the_dense_model_is_always_accepted():
    model = no_eos(tiny_llama())
    twin = copy.deepcopy(model)
    run = D.assisted_generate(model, None, PROMPT, twin, gamma=3, max_new_tokens=20)
    plain = D.plain_generate(model, None, PROMPT, max_new_tokens=20)
    assert torch.equal(run.sequence, plain.sequence)
    assert (run.tokens, run.dense_passes, run.drafted, run.accepted) == (20, 5, 15, 15)
    assert run.acceptance_rate == 1.0 and run.alpha == 1.0 and run.tokens_per_pass == 4.0
    assert run.draft_passes == 15 and plain.dense_passes == 20
    sampled = D.assisted_generate(model, None, PROMPT, twin, gamma=3, max_new_tokens=20,
                                  do_sample=True, temperature=0.8, seed=3)
    assert sampled.acceptance_rate == 1.0 and sampled.dense_passes == 5


def test_a_draft_that_is_always_wrong_is_never_accepted():
    model = no_eos(tiny_llama())
    wrong = copy.deepcopy(model)
    with torch.no_grad():   # the draft's arg-max is always the token after the dense arg-max
        wrong.lm_head.weight.copy_(model.lm_head.weight.roll(1, 0))
    run = D.assisted_generate(model, None, PROMPT, wrong, gamma=3, max_new_tokens=12)
    assert torch.equal(run.sequence, D.plain_generate(model, None, PROMPT, max_new_tokens=12).sequence)
    assert run.accepted == 0 and run.dense_passes == 12 and run.alpha == 0.0
    assert run.rejections == sum(1 for g, _ in run.per_round if g > 0)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma3], ids=["llama", "gemma3"])
def test_a_shrunk_draft_accepts_what_teacher_forced_agreement_predicts(make):
    model = no_eos(make())
    draft = shrink(model, {"attn": [1], "mlp": [2]})
    n = 18   # past Gemma's sliding window of 6: the draft's cache is cropped across it
    plain = D.plain_generate(model, None, PROMPT, max_new_tokens=n)
    run = D.assisted_generate(model, None, PROMPT, draft, gamma=3, max_new_tokens=n)
    assert torch.equal(run.sequence, plain.sequence)
    ids = torch.cat([PROMPT, plain.sequence[None]], 1)
    tf = D.teacher_forced(model, draft, ids, PROMPT.shape[1])
    assert tf["dense_is_argmax"].all() and len(tf) == n
    replay = D.replay_greedy(tf["top1"], 3, n)
    assert 0 < run.accepted < run.drafted, "the case should have both accepted and rejected tokens"
    assert run.per_round == replay["per_round"]
    assert run.dense_passes == replay["rounds"]
    tested = run.tested()   # every tested draft was accepted exactly where the arg-maxes agree
    assert len(tested) == run.accepted + run.rejections
    assert (tf["top1"].to_numpy()[tested["step"] - 1] == tested["accepted"]).all()
    # a precomputed dense pass gives the same table
    z = model(input_ids=ids).logits
    assert D.teacher_forced(None, draft, ids, PROMPT.shape[1], dense_logits=z).equals(tf)


def test_the_draft_and_the_dense_model_are_left_as_they_were():
    model = no_eos(tiny_llama())
    draft = shrink(model, {"attn": [2]})
    cfg = draft.generation_config.to_dict()
    D.assisted_generate(model, None, PROMPT, draft, gamma=2, max_new_tokens=6)
    assert draft.generation_config.to_dict() == cfg
    assert "generate" not in draft.__dict__
    for m in (model, draft):
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_race_interleaves_and_compares():
    model = no_eos(tiny_llama())
    draft = shrink(model, {"attn": [1]})
    df = D.race(model, None, [PROMPT, PROMPT[:, :4]], draft, gamma=2, max_new_tokens=8, repeats=2)
    assert list(df["mode"]) == ["plain", "greedy"] * 4
    assert list(df["rep"]) == [0] * 4 + [1] * 4 and df["same_as_plain"].all()
    assert (df.loc[df["mode"] == "plain", "dense_passes"] == 8).all()
    assert [r.mode for r in df.attrs["runs"]] == list(df["mode"])
    two = D.race(model, None, [PROMPT], {"a": draft, "b": copy.deepcopy(model)}, gamma=2, max_new_tokens=6)
    assert list(two["draft"]) == ["", "a", "b"] and two["same_as_plain"].all()
    assert two.loc[2, "accepted"] == two.loc[2, "drafted"]    # the twin draft is always right


def test_bad_arguments():
    model = tiny_llama()
    with pytest.raises(ValueError, match="gamma"):
        D.assisted_generate(model, None, PROMPT, copy.deepcopy(model), gamma=0)
    with pytest.raises(ValueError, match="separate model"):
        D.assisted_generate(model, None, PROMPT, model)
    with pytest.raises(ValueError, match="one prompt"):
        D.assisted_generate(model, None, PROMPT.repeat(2, 1), copy.deepcopy(model))
    with pytest.raises(helpers.MissingTokenizerError):
        D.plain_generate(model, None, "a text prompt")
