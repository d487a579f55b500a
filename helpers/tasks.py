"""Tasks that ask the same knowledge in different ways: multiple choice and free generation.

The facts ship with the package (``helpers/data/facts.jsonl``, written by this project) and are
loaded with :mod:`datasets` — the same code path that loads a hub data set when you name one.
Each item has:

* ``prompt``: a sentence to complete ("The capital of France is"),
* ``question``: the same fact as a question ("What is the capital of France?"),
* ``options``: four candidate answers, ``answer``: the index of the right one,
* ``aliases``: strings that count as the right answer in free generation.

Two ways to ask:

* :func:`multiple_choice` scores every option as a continuation of ``prompt`` by its
  log-likelihood :math:`\\sum_t \\log p(o_t \\mid \\text{prompt}, o_{<t})` and picks the best
  (the usual "acc" of lm-evaluation-harness). Only the ranking of four candidates matters.
* :func:`free_generation` decodes greedily from ``prompt`` and checks whether an alias is among
  the first three words the model wrote. Every token must be right, one after another.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from .corpus import DATA_DIR
from .models import resolve_tokenizer

__all__ = ["DATA_DIR", "load_facts", "multiple_choice", "free_generation", "accuracy"]


def load_facts(path: str | None = None, *, split: str = "train"):
    """The facts as a :class:`datasets.Dataset` (default: the set that ships with the package).

    ``path`` may be another JSON Lines file with the same columns, or a hub data set id (used only
    when you name one and are online).
    """
    from datasets import load_dataset

    if path is None:
        path = str(DATA_DIR / "facts.jsonl")
    if Path(path).suffix in (".jsonl", ".json"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"No facts file at {path}.")
        ds = load_dataset("json", data_files=str(path), split=split)
    else:
        ds = load_dataset(path, split=split)
    missing = {"prompt", "options", "answer"} - set(ds.column_names)
    if missing:
        raise ValueError(f"The facts data set lacks the columns {sorted(missing)}.")
    return ds


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def multiple_choice(model, tokenizer, ds, *, batch_size: int = 32) -> pd.DataFrame:
    """Score each option of each item by its log-likelihood after ``prompt``; one row per item.

    Columns: ``id``, ``pred`` (index of the best option), ``answer``, ``correct`` (bool),
    ``logliks`` (the four summed log-probabilities), ``margin`` (best right minus best wrong).
    """
    tokenizer = resolve_tokenizer(model, tokenizer, what="multiple_choice")
    dev = next(model.parameters()).device
    pairs = []  # (item index, option index, prompt ids, option ids)
    for i, item in enumerate(ds):
        p_ids = tokenizer(item["prompt"], add_special_tokens=False)["input_ids"]
        for j, opt in enumerate(item["options"]):
            full = tokenizer(item["prompt"] + " " + opt, add_special_tokens=False)["input_ids"]
            if full[: len(p_ids)] != p_ids:  # tokenisation merged across the boundary
                o_ids = tokenizer(" " + opt, add_special_tokens=False)["input_ids"]
                full = p_ids + o_ids
            pairs.append((i, j, len(p_ids), full))
    scores = torch.empty(len(pairs), dtype=torch.float64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for sl in _batches(len(pairs), batch_size):
        chunk = pairs[sl]
        width = max(len(f) for *_, f in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (*_, f) in enumerate(chunk):
            ids[r, : len(f)] = torch.tensor(f)
            mask[r, : len(f)] = 1
        logp = torch.log_softmax(model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float(), -1)
        for r, (_, _, start, f) in enumerate(chunk):
            tgt = torch.tensor(f[start:], device=dev)
            lp = logp[r, start - 1 : len(f) - 1].gather(-1, tgt[:, None]).sum()
            scores[sl.start + r] = lp.item()
    rows = []
    k = 0
    for i, item in enumerate(ds):
        n_opt = len(item["options"])
        s = scores[k : k + n_opt].tolist()
        k += n_opt
        pred = max(range(n_opt), key=lambda j: s[j])
        right = s[item["answer"]]
        wrong = max(v for j, v in enumerate(s) if j != item["answer"])
        rows.append({"id": item.get("id", i), "pred": pred, "answer": item["answer"],
                     "correct": pred == item["answer"], "logliks": s, "margin": right - wrong})
    return pd.DataFrame(rows)


def _answers(text: str, alias: str, within: int = 3) -> bool:
    """True when ``alias`` appears as whole words among the first ``within`` words of ``text``."""
    head = " ".join(text.split()[: within + len(alias.split()) - 1])
    return re.search(r"(?<!\w)" + re.escape(alias.lower()) + r"(?!\w)", head.lower()) is not None


@torch.no_grad()
def free_generation(model, tokenizer, ds, *, max_new_tokens: int = 8, batch_size: int = 32) -> pd.DataFrame:
    """Greedy decoding from each ``prompt``; right when an alias is among the first three words.

    Columns: ``id``, ``prompt``, ``generated``, ``correct`` (bool).
    """
    tokenizer = resolve_tokenizer(model, tokenizer, what="free_generation")
    dev = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    rows = []
    try:
        for sl in _batches(len(ds), batch_size):
            items = ds[sl]
            enc = tokenizer(items["prompt"], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(dev)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for j, text in enumerate(texts):
                first = text.strip().split("\n")[0]
                aliases = items["aliases"][j] if "aliases" in items else [items["options"][j][items["answer"][j]]]
                rows.append({"id": items["id"][j] if "id" in items else sl.start + j,
                             "prompt": items["prompt"][j], "generated": first,
                             "correct": any(_answers(first, a) for a in aliases)})
    finally:
        tokenizer.padding_side = side
    return pd.DataFrame(rows)


def accuracy(df: pd.DataFrame) -> float:
    """Fraction of rows whose ``correct`` is true."""
    return float(df["correct"].mean()) if len(df) else float("nan")
