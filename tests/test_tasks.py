"""helpers.tasks and helpers.stats on tiny random models, a tiny word-level tokenizer and constructed
logits / vectors with known answers (fast; no real model)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import helpers
from helpers import metrics as M
from helpers import stats, tasks
from conftest import tiny_llama

DATA = Path(__file__).resolve().parent / "data"

WORDS = ("the capital of france germany italy is paris berlin rome vienna what question answer "
         "a b c d dog cat fish bird red green blue city river mountain user assistant system "
         "one two three four five six seven eight nine ten").split()
SPECIAL = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer():
    """A word-level tokenizer over ~50 words (vocabulary < 64), with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS + ["?", ".", ":", "\n"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                  eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} "
                         "<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> "
                         "assistant {% endif %}")
    assert len(tok) <= 64
    return tok


def facts_ds():
    from datasets import Dataset

    rows = [
        {"id": "f0", "question": "what is the capital of france ?", "prompt": "the capital of france is",
         "options": ["berlin", "paris", "rome", "vienna"], "answer": 1, "aliases": ["paris"]},
        {"id": "f1", "question": "what is the capital of germany ?", "prompt": "the capital of germany is",
         "options": ["berlin", "paris", "rome", "vienna"], "answer": 0, "aliases": ["berlin"]},
        {"id": "f2", "question": "what is the capital of italy ?", "prompt": "capital of italy",
         "options": ["rome", "paris", "berlin", "vienna"], "answer": 0, "aliases": ["rome"]},
        {"id": "f3", "question": "what is red ?", "prompt": "the dog is",
         "options": ["red", "green", "blue", "one"], "answer": 2, "aliases": ["blue"]},
        {"id": "f4", "question": "one two three ?", "prompt": "one two three four five six seven",
         "options": ["eight", "nine", "ten", "two"], "answer": 0, "aliases": ["eight"]},
    ]
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture
def llama():
    return tiny_llama(seed=1)


def _alone_logits(model, tok, prompt):
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return model(input_ids=ids).logits[0, -1].float()


# ----------------------------------------------------------------------------- data loading

def test_load_facts_maps_an_mmlu_layout_file():
    ds = tasks.load_facts(str(DATA / "mmlu_sample.jsonl"))
    assert len(ds) == 5 and set(ds.column_names) >= {"id", "topic", "question", "prompt", "options",
                                                       "answer", "aliases"}
    first = ds[1]
    assert first["options"] == ["Venus", "Earth", "Mercury", "Mars"] and first["answer"] == 2
    assert first["aliases"] == ["Mercury"] and first["topic"] == "astronomy"
    assert first["prompt"] == "Question: Which planet is closest to the Sun?\nAnswer:"
    assert first["id"] == "mmlu-00001"


def test_load_facts_maps_an_arc_layout_file_with_letter_and_digit_keys():
    ds = tasks.load_facts(str(DATA / "arc_sample.jsonl"))
    assert [r["answer"] for r in ds] == [1, 0, 2]
    assert [len(r["options"]) for r in ds] == [4, 3, 5]
    assert ds[2]["aliases"] == ["whale"] and ds[0]["id"] == "arc-q1" and ds[0]["topic"] == "arc"
    assert ds[0]["prompt"].startswith("Question: Which part of a plant")


def test_load_facts_layout_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no question here"}\n')
    with pytest.raises(tasks.DataLayoutError, match="MMLU"):
        tasks.load_facts(str(bad))
    key = tmp_path / "key.jsonl"
    key.write_text('{"question": "q", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, '
                   '"answerKey": "C"}\n')
    with pytest.raises(Exception, match="answerKey"):
        tasks.load_facts(str(key))
    with pytest.raises(FileNotFoundError):
        tasks.load_facts(str(tmp_path / "missing.jsonl"))


def test_load_retrieval_reads_a_local_file(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"id": "r0", "topic": "t", "passage": "p one", "query": "q one"}\n'
                 '{"id": "r1", "topic": "t", "passage": "p two", "query": "q two"}\n')
    ds = tasks.load_retrieval(str(f))
    assert ds["query"] == ["q one", "q two"]
    f.write_text('{"id": "r0", "passage": "p"}\n')
    with pytest.raises(tasks.DataLayoutError, match="query"):
        tasks.load_retrieval(str(f))


def test_letter_choice_rewrites_prompt_and_options():
    ds = tasks.letter_choice(facts_ds())
    item = ds[0]
    assert item["options"] == ["A", "B", "C", "D"] and item["answer"] == 1
    assert item["prompt"].splitlines() == ["Question: what is the capital of france ?", "A. berlin",
                                           "B. paris", "C. rome", "D. vienna", "Answer:"]
    assert item["option_texts"] == ["berlin", "paris", "rome", "vienna"]


# ----------------------------------------------------------------------------- option subspace

def test_option_probs_renormalise_over_the_options_and_ignore_everything_else():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 40, generator=g, dtype=torch.float64) * 2
    S = torch.tensor([[1, 5, 7, 9], [0, 2, 3, 4], [10, 20, 30, 39]])
    for T in (1.0, 0.5, 2.0):
        pS = M.option_probs(z, S, T)
        p = torch.softmax(z / T, -1).gather(1, S)
        torch.testing.assert_close(pS, p / p.sum(-1, keepdim=True))
    # one set for all rows (1-D) still works as before
    torch.testing.assert_close(M.option_logits(z, [1, 5]), z[:, [1, 5]])
    # changing logits outside S changes p but not p^S
    z2 = z.clone()
    z2[:, 11:19] += 5.0
    torch.testing.assert_close(M.option_probs(z2, S), M.option_probs(z, S))
    with pytest.raises(ValueError, match="leading shape"):
        M.option_logits(z, torch.zeros(2, 4, dtype=torch.long))


def test_compare_options_on_constructed_logits():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 50, generator=g) * 3
    S = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [0, 49, 25]]   # lengths may differ
    # 1) move only tokens outside the options: the option subspace does not see it
    zp = z.clone()
    zp[:, 30:45] += torch.randn(4, 15, generator=g) * 2
    df = tasks.compare_options(z, zp, S)
    assert (df["kl_options"] == 0).all() and (df["one_minus_cos_p_options"] < 1e-12).all()
    assert (df["kl_full"] > 1e-4).all() and (df["top1_options"] == 1).all()
    np.testing.assert_allclose(df["kl_full"], M.kl(z, zp).numpy())
    # 2) a shift of every logit: nothing changes in p (full or options), z moves
    df = tasks.compare_options(z, z + 2.0, S)
    assert df["kl_full"].max() < 1e-9 and df["kl_options"].max() < 1e-9
    assert (df["one_minus_cos_z_full"] > 1e-6).all() and (df["var_dz_full"] < 1e-9).all()
    # 3) boost the weakest option: agreement over the options breaks, values match metrics
    zp = z.clone()
    zp[0, 1 + int(z[0, [1, 2, 3, 4]].argmin())] += 40
    df = tasks.compare_options(z, zp, S, T=2.0)
    assert df.loc[0, "top1_options"] == 0 and df.loc[0, "top1_full"] == 0
    want = M.kl(z[0, [1, 2, 3, 4]], zp[0, [1, 2, 3, 4]], 2.0).item()
    assert math.isclose(df.loc[0, "kl_options"], want, rel_tol=1e-9)
    w = M.option_probs(z[0], [1, 2, 3, 4], 2.0)
    dz = (zp[0, [1, 2, 3, 4]] - z[0, [1, 2, 3, 4]]).double()
    var = (w * (dz - (w * dz).sum()) ** 2).sum().item()
    assert math.isclose(df.loc[0, "var_dz_options"], var, rel_tol=1e-6)
    assert math.isclose(df.loc[0, "kl_options_est"], var / 8, rel_tol=1e-6)
    # 4) a small perturbation: the Theorem 3 estimate is close to the KL
    zp = z + 0.01 * torch.randn(z.shape, generator=g)
    df = tasks.compare_options(z, zp, S)
    np.testing.assert_allclose(df["kl_full_est"], df["kl_full"], rtol=0.05)
    with pytest.raises(ValueError, match="option lists"):
        tasks.compare_options(z, zp, S[:2])


def test_option_subspace_reads_the_next_token_after_each_prompt(llama, tok):
    ds = facts_ds()
    df = tasks.option_subspace(llama, tok, ds, T=1.5, batch_size=2)   # padding inside batches
    assert list(df["id"]) == list(ds["id"])
    for i, item in enumerate(ds):
        S = [tok(" " + o, add_special_tokens=False)["input_ids"][0] for o in item["options"]]
        assert df.loc[i, "option_ids"] == S
        z = _alone_logits(llama, tok, item["prompt"])
        want = torch.softmax(z[S] / 1.5, -1)
        np.testing.assert_allclose(df.loc[i, "p_options"], want.numpy(), rtol=1e-4, atol=1e-6)
        assert df.loc[i, "pred"] == int(want.argmax())
        assert df.loc[i, "correct"] == (int(want.argmax()) == item["answer"])
        p = torch.softmax(z / 1.5, -1)
        assert math.isclose(df.loc[i, "p_top1"], p.max().item(), rel_tol=1e-4)
        assert math.isclose(df.loc[i, "mass_options"], p[S].sum().item(), rel_tol=1e-4)
        assert df.loc[i, "top1_token"] == tok.decode([int(z.argmax())])


def test_multiple_choice_sums_option_log_likelihoods(llama, tok):
    from datasets import Dataset

    rows = list(facts_ds()) + [
        {"id": "m0", "question": "q ?", "prompt": "the dog is",
         "options": ["red fish", "blue", "a green river city", "one two"], "answer": 2,
         "aliases": ["green"]},
        {"id": "m1", "question": "q ?", "prompt": "one two three four",
         "options": ["five six seven", "five", "six five", "ten ten ten ten"], "answer": 0,
         "aliases": ["five"]}]
    ds = Dataset.from_list(rows)
    df = tasks.multiple_choice(llama, tok, ds, batch_size=3)
    for i, item in enumerate(ds):
        p = tok(item["prompt"], add_special_tokens=False)["input_ids"]
        want = []
        for o in item["options"]:
            o_ids = tok(" " + o, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(llama(input_ids=torch.tensor([p + o_ids])).logits[0].double(), -1)
            want.append(sum(logp[len(p) - 1 + t, o_ids[t]].item() for t in range(len(o_ids))))
        np.testing.assert_allclose(df.loc[i, "logliks"], want, rtol=1e-4, atol=1e-4)
        assert df.loc[i, "pred"] == int(np.argmax(want))
        assert df.loc[i, "correct"] == (int(np.argmax(want)) == item["answer"])
    # the next-token logits of the same passes equal next_token_logits'
    df2, z = tasks.multiple_choice(llama, tok, ds, return_logits=True)
    np.testing.assert_allclose(list(df2["logliks"]), list(df["logliks"]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z, tasks.next_token_logits(llama, tok, ds), rtol=1e-4, atol=1e-5)
    via = tasks.option_subspace(llama, tok, ds.select(range(5)), logits=z[:5])
    own = tasks.option_subspace(llama, tok, ds.select(range(5)))
    assert list(via["pred"]) == list(own["pred"])
    np.testing.assert_allclose(list(via["p_options"]), list(own["p_options"]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        tasks.option_subspace(llama, tok, ds.select(range(5)), logits=z)


def test_option_subspace_refuses_options_with_a_shared_first_token(llama, tok):
    from datasets import Dataset

    ds = Dataset.from_list([{"id": "x", "prompt": "the dog is", "options": ["red", "red", "blue"],
                             "answer": 0}])
    with pytest.raises(ValueError, match="distinct_options"):
        tasks.option_subspace(llama, tok, ds)
    assert len(tasks.distinct_options(tok, ds)) == 0
    assert len(tasks.distinct_options(tok, facts_ds())) == 5


def test_subspace_vs_full_matches_a_manual_comparison_and_restores(llama, tok):
    ds = facts_ds()
    before = tasks.next_token_logits(llama, tok, ds)
    df = tasks.subspace_vs_full(llama, tok, ds, "drop-attn", layers=[1, 2], T=1.0)
    after = tasks.next_token_logits(llama, tok, ds)
    torch.testing.assert_close(after, before, rtol=0, atol=0)          # dense weights are back
    with helpers.pruned(llama, "drop-attn", layers=[1, 2]):
        zp = torch.stack([_alone_logits(llama, tok, p) for p in ds["prompt"]])
    S = tasks.option_ids(tok, ds)
    want = tasks.compare_options(before, zp, S)
    for col in want.columns:
        np.testing.assert_allclose(df[col], want[col], rtol=1e-4, atol=1e-7, err_msg=col)
    assert (df["kl_full"] > 0).all()
    dense = tasks.option_subspace(llama, tok, ds)
    assert list(df["pred_dense"]) == list(dense["pred"])
    assert list(df["correct_dense"]) == list(dense["correct"])
    pred_pruned = [int(zp[i, s].argmax()) for i, s in enumerate(S)]
    assert list(df["pred_pruned"]) == pred_pruned
    assert "drop-attn" in df.attrs["pruning"]
    # nothing removed: every distance is 0, every arg-max agrees; dense logits can be reused
    df0 = tasks.subspace_vs_full(llama, tok, ds, "magnitude", sparsity=0.0, dense=before)
    assert df0["kl_full"].max() < 1e-9 and df0["top1_full"].all() and df0["top1_options"].all()


# ----------------------------------------------------------------------------- chat answers

def test_mentions_is_word_bounded_and_case_folded():
    assert tasks.mentions("The capital is Paris.", ["Paris"])
    assert tasks.mentions("PARIS, of course", ["paris"])
    assert not tasks.mentions("A Parisian café", ["Paris"])
    assert tasks.mentions("It is New York City", ["Boston", "New York"])
    assert not tasks.mentions("It is New-ish York", ["New York"])
    assert tasks.mentions("about 3.14 or so", ["3.14"]) and not tasks.mentions("13.145", ["3.14"])
    assert not tasks.mentions("anything", ["", "  "])


def test_answer_by_chat_is_batch_invariant_and_scores_with_mentions(llama, tok):
    ds = facts_ds()
    one = tasks.answer_by_chat(llama, tok, ds, max_new_tokens=5, batch_size=1)
    many = tasks.answer_by_chat(llama, tok, ds, max_new_tokens=5, batch_size=4)   # left padding
    assert list(one["answer_text"]) == list(many["answer_text"])
    assert list(one["id"]) == list(ds["id"])
    for i, item in enumerate(ds):
        assert many.loc[i, "correct"] == tasks.mentions(many.loc[i, "answer_text"], item["aliases"])
    # the chat template is used: the same greedy tokens as decoding the template by hand
    chat = tok.apply_chat_template([{"role": "user", "content": ds[0]["question"]}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(chat, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = llama.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                         do_sample=False, pad_token_id=tok.pad_token_id)
    assert one.loc[0, "answer_text"] == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def test_answer_by_chat_needs_a_chat_template(llama):
    t = tiny_tokenizer()
    t.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        tasks.answer_by_chat(llama, t, facts_ds())


# ----------------------------------------------------------------------------- retrieval

def test_rank_on_vectors_with_known_answers():
    index = torch.eye(4, 6) * torch.tensor([1.0, 5.0, 0.2, 3.0])[:, None]   # norms differ
    queries = torch.eye(4, 6).clone()
    queries[2] = 0.9 * queries[2] + 0.1 * queries[0]       # still nearest to passage 2
    queries[3] = torch.tensor([0.0, 1.0, 0.0, 0.5, 0.0, 0.0])  # nearer to passage 1 than to 3
    df = tasks.rank(index, queries)
    assert list(df["top1"]) == [0, 1, 2, 1]
    assert list(df["rank"]) == [1, 1, 1, 2]
    assert list(df["correct"]) == [True, True, True, False]
    assert math.isclose(df["rr"].mean(), (1 + 1 + 1 + 0.5) / 4)
    # cosine, not dot product: scaling a query or a passage changes nothing
    torch.testing.assert_close(torch.tensor(tasks.rank(index * 7, queries * 0.1)["rank"].to_numpy()),
                               torch.tensor(df["rank"].to_numpy()))
    # explicit targets
    df = tasks.rank(index, queries, target=[1, 1, 2, 3])
    assert list(df["rank"]) == [2, 1, 1, 2]
    with pytest.raises(ValueError):
        tasks.rank(index, queries[:, :3])


def test_embed_pools_real_tokens_only(llama, tok):
    texts = ["the dog is red", "one two three four five six", "paris", "the capital of italy is rome"]
    site = "blocks.2.hook_resid_post"
    e = tasks.embed(llama, tok, texts, site=site, batch_size=4)
    both = tasks.embed(llama, tok, texts, site=site, pool=("mean_all", "last"), batch_size=3)
    last = tasks.embed(llama, tok, texts, site=site, pool="last", batch_size=3)
    for i, t in enumerate(texts):
        ids = tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"]
        h = helpers.trace(llama, None, ids, sites=site).h(site)[0]
        want = h[1:].mean(0) if len(h) > 1 else h[0]          # the first token left out
        torch.testing.assert_close(e[i], want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both["mean_all"][i], h.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(both["last"][i], h[-1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(last[i], h[-1], rtol=1e-4, atol=1e-5)
    default = tasks.embed(llama, tok, texts[:1])
    ids = tok(texts[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    h = helpers.trace(llama, None, ids, sites="blocks.3.hook_resid_post").h("blocks.3.hook_resid_post")
    torch.testing.assert_close(default[0], h[0, 1:].mean(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        tasks.embed(llama, tok, texts, pool="max")


def test_retrieval_reuses_a_given_index_and_finds_identical_texts(llama, tok):
    passages = ["the dog is red", "one two three four", "the capital of france is paris",
                "a blue fish in a river"]
    df = tasks.retrieval(llama, tok, passages, passages)      # a query equal to its passage
    assert df["correct"].all() and math.isclose(df["rr"].mean(), 1.0)
    index = tasks.embed(llama, tok, passages)
    with helpers.pruned(llama, "drop-mlp", layers=[0, 1, 2]):
        cross = tasks.retrieval(llama, tok, passages, passages, index=index)
        same = tasks.retrieval(llama, tok, passages, passages)
        q = tasks.embed(llama, tok, passages)
    np.testing.assert_allclose(cross["cos_right"], M.cosine(q, index).numpy(), rtol=1e-5)
    assert same["correct"].all()
    assert (cross["cos_right"] < 1 - 1e-6).all()              # the pruned queries moved
    with pytest.raises(ValueError, match="index"):
        tasks.retrieval(llama, tok, passages, passages, index=index[:2])


# ----------------------------------------------------------------------------- stats

def test_wilson_against_known_values():
    lo, hi = stats.wilson(81, 263)          # Wikipedia-style textbook example
    assert math.isclose(lo, 0.2553, abs_tol=5e-4) and math.isclose(hi, 0.3662, abs_tol=5e-4)
    lo, hi = stats.wilson(0, 10)
    assert lo == 0 and math.isclose(hi, 0.2775, abs_tol=5e-4)   # not collapsed at 0
    lo, hi = stats.wilson(10, 10)
    assert hi == 1 and math.isclose(lo, 0.7225, abs_tol=5e-4)
    assert stats.wilson(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson(np.array([5, 50]), np.array([10, 100]))
    assert lo.shape == (2,) and hi[1] - lo[1] < hi[0] - lo[0]    # more items, narrower
    lo99, hi99 = stats.wilson(50, 100, alpha=0.01)
    assert lo99 < lo[1] and hi99 > hi[1]
    with pytest.raises(ValueError):
        stats.wilson(11, 10)
    with pytest.raises(ValueError):
        stats.wilson(1, 10, alpha=1.5)


def test_wilson_coverage_is_close_to_nominal():
    rng = np.random.default_rng(0)
    n, p = 60, 0.8
    k = rng.binomial(n, p, size=4000)
    lo, hi = stats.wilson(k, n)
    cover = ((lo <= p) & (p <= hi)).mean()
    assert 0.93 < cover < 0.97, cover


def test_bootstrap_and_proportion():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=400)
    lo, hi = stats.bootstrap(x, np.median)
    assert lo < np.median(x) < hi and hi - lo < 0.4 and 2.7 < lo and hi < 3.3
    assert stats.bootstrap(x, np.median) == (lo, hi)          # deterministic
    pair = np.stack([x, x + 1.0], axis=1)
    lo, hi = stats.bootstrap(pair, lambda a: np.mean(a[:, 1] - a[:, 0]))
    assert math.isclose(lo, 1.0) and math.isclose(hi, 1.0)
    d = stats.proportion(pd.Series([True, False, True, True]))
    assert d["k"] == 3 and d["n"] == 4 and d["acc"] == 0.75 and d["lo"] < 0.75 < d["hi"]
    with pytest.raises(ValueError):
        stats.bootstrap([], np.median)


def test_accuracy_band_draws_line_and_band():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    line = stats.accuracy_band(ax, [0, 4, 8], [90, 80, 40], 100, label="x")
    assert np.allclose(line.get_ydata(), [0.9, 0.8, 0.4]) and len(ax.collections) == 1
    plt.close(fig)
