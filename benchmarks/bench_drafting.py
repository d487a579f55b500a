"""Speculative decoding with a shrunk pruned draft: speed-up and acceptance, in one run.

For each draft (the dense model with its ``n`` least important attention / MLP sublayers or
blocks removed, built by :func:`helpers.shrink`) and each chat prompt, in every repetition:
plain greedy ``generate`` and greedy ``generate(..., assistant_model=draft)`` with a fixed draft
length γ, interleaved (plain, draft 1, draft 2, ..., then the next prompt), so that a change of
machine load hits every variant alike. Reported per draft:

* acceptance: accepted / drafted tokens, the per-token acceptance α = accepted / (accepted +
  rejections), and tokens per dense pass; the same numbers predicted from the teacher-forced
  top-1 agreement (exact greedy replay, and the independence formula (1 − α^(γ+1)) / (1 − α));
* speed-up = plain time / assisted time for the same tokens, as a ratio of medians over the
  repetitions, for wall time and for the CPU time of this process (``time.process_time``: on a
  machine shared with other work the wall time mostly measures the neighbours; the CPU time, best
  with ``--threads 1`` where no thread spins waiting for a descheduled partner, measures the work);
* where the time goes, in units of one plain dense pass: c (one draft pass), v (one verify pass of
  γ + 1 tokens) and o (the rest of a round: transformers' draft ``generate`` call, cache crops);
* the draft's FLOPs per token relative to the dense model (exact, load-independent).

The machine load (``os.getloadavg``) is printed before and after. Greedy outputs are checked to
equal the plain ones.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_drafting.py [--reps 3] [--threads 1]
        [--tokens 32] [--gamma 4] [--drafts attn:8,mlp:2,block:4,block:12] [--prompts 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402
from helpers import drafting as D  # noqa: E402
from helpers.generation import CHAT_PROMPTS  # noqa: E402


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--drafts", default="attn:8,mlp:2,block:4,block:12")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()

    model, tok = helpers.load_model(args.model)
    imp = helpers.sublayer_importance(model, tok, n_samples=8)
    prompts = [tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False,
                                       add_generation_prompt=True) for c in CHAT_PROMPTS[:args.prompts]]
    drafts = {}
    for spec in args.drafts.split(","):
        kind, n = spec.split(":")
        layers = sorted(imp[imp.sublayer == kind].nsmallest(int(n), "importance").layer.tolist())
        drafts[spec] = helpers.shrink(model, {kind: layers})
    ids = tok(prompts[0], return_tensors="pt").input_ids[:, :16]
    flops_dense = helpers.costs.flops_per_token(model, tok, ids)

    # warm-up: one of each
    D.plain_generate(model, tok, prompts[0], max_new_tokens=4)
    for d in drafts.values():
        D.assisted_generate(model, tok, prompts[0], d, gamma=args.gamma, max_new_tokens=4)

    rec = {name: {"wall": [], "cpu": [], "runs": []} for name in ["plain", *drafts]}
    plains = {}
    for rep in range(args.reps):
        wall = {k: 0.0 for k in rec}
        cpu = {k: 0.0 for k in rec}
        for i, p in enumerate(prompts):
            run, w, c = timed(lambda: D.plain_generate(model, tok, p, max_new_tokens=args.tokens))
            plains[i] = run
            wall["plain"] += w
            cpu["plain"] += c
            rec["plain"]["runs"].append(run)
            for name, d in drafts.items():
                run, w, c = timed(lambda: D.assisted_generate(model, tok, p, d, gamma=args.gamma,
                                                              max_new_tokens=args.tokens))
                assert torch.equal(run.sequence, plains[i].sequence), f"{name}: greedy output differs"
                wall[name] += w
                cpu[name] += c
                rec[name]["runs"].append(run)
        for k in rec:
            rec[k]["wall"].append(wall[k])
            rec[k]["cpu"].append(cpu[k])
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {wall[k]:.1f} s" for k in rec), flush=True)

    # predictions from one teacher-forced pass per prompt and draft
    pred = {}
    for name, d in drafts.items():
        agree_all, rounds = [], 0
        for i, p in enumerate(prompts):
            enc = tok(p, return_tensors="pt").input_ids
            full = torch.cat([enc, plains[i].sequence[None]], 1)
            tf = D.teacher_forced(model, d, full, enc.shape[1])
            agree_all += tf["top1"].tolist()
            rounds += D.replay_greedy(tf["top1"], args.gamma, args.tokens)["rounds"]
        pred[name] = {"alpha": sum(agree_all) / len(agree_all), "rounds": rounds}

    plain_runs = rec["plain"]["runs"]
    t1 = sum(r.dense_seconds for r in plain_runs) / sum(r.dense_passes for r in plain_runs)
    med = {k: (statistics.median(v["wall"]), statistics.median(v["cpu"])) for k, v in rec.items()}
    load1 = os.getloadavg()
    print(f"\n{args.model}, γ = {args.gamma}, {args.prompts} prompts × {args.tokens} tokens, "
          f"{args.reps} interleaved repetitions, {args.threads} thread(s)")
    print(f"machine load (1/5/15 min) before: {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
          f"after: {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}")
    print(f"plain: {1e3 * med['plain'][0] / (args.prompts * args.tokens):.1f} ms/token wall, "
          f"{1e3 * med['plain'][1] / (args.prompts * args.tokens):.1f} ms/token CPU\n")
    print("| draft | FLOPs vs dense | accepted/drafted | α measured | α teacher top-1 | tokens/pass "
          "| formula | dense passes (replay) | speed-up wall | speed-up CPU | c | v | o |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, d in drafts.items():
        runs = rec[name]["runs"][-args.prompts:]          # one repetition's counts (all equal)
        drafted, accepted = sum(r.drafted for r in runs), sum(r.accepted for r in runs)
        rej = sum(r.rejections for r in runs)
        passes, tokens = sum(r.dense_passes for r in runs), sum(r.tokens for r in runs)
        allr = rec[name]["runs"]
        c = sum(r.draft_seconds for r in allr) / sum(r.draft_passes for r in allr) / t1
        v = sum(r.dense_seconds for r in allr) / sum(r.dense_passes for r in allr) / t1
        o = sum(r.seconds - r.dense_seconds - r.draft_seconds for r in allr) / sum(r.dense_passes for r in allr) / t1
        fl = helpers.costs.flops_per_token(d, tok, ids) / flops_dense
        print(f"| {name} | {fl:.2f} | {accepted / drafted:.2f} | {accepted / (accepted + rej):.2f} | "
              f"{pred[name]['alpha']:.2f} | {tokens / passes:.2f} | "
              f"{D.expected_tokens_per_pass(pred[name]['alpha'], args.gamma):.2f} | "
              f"{passes} ({pred[name]['rounds']}) | {med['plain'][0] / med[name][0]:.2f}× | "
              f"{med['plain'][1] / med[name][1]:.2f}× | {c:.2f} | {v:.2f} | {o:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
