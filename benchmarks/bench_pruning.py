"""Time the pruning toolkit on the default model (SmolLM2-135M-Instruct) and print a markdown table.

    .venv/bin/python benchmarks/bench_pruning.py [--repeats 3] [--threads N] [--n-samples 16]

Rows: a dense forward pass over the calibration batch (the unit everything else is made of, and
the denominator of the ratio column; it is re-timed before every pruning run and the ratio uses
the median of those, so a change of machine load between rows cancels out),
sublayer importance scoring (one hooked forward pass), magnitude, Wanda and SparseGPT at 50%
unstructured and 2:4 (each the time to prune *in place*, from the ``with`` line to the first line
of the block: calibration pass(es), masks, weight updates), and the restore on exit. Every row is
the median of ``--repeats`` runs in the same process. Wanda and SparseGPT each run every decoder
layer twice on the calibration tokens (once to collect statistics from the dense layer, once to
pass the pruned layer's output on), so they cost about two forward passes plus their own work.
The result cache (helpers.cache) is turned off: every run computes.

Targets (issue #13): magnitude <= 0.3x, Wanda <= 2.2x, SparseGPT <= 3.5x the dense forward pass.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--n-samples", type=int, default=None,
                    help="calibration sequences of 128 tokens (default: the library default)")
    args = ap.parse_args()

    import torch

    import helpers
    from helpers import cache, pruning

    cache.set_enabled(False)

    if args.threads:
        torch.set_num_threads(args.threads)
    n_samples = args.n_samples or pruning.N_SAMPLES
    model, tok = helpers.load_model()
    ids = pruning.calibration_ids(tok, None, n_samples=n_samples, seq_len=pruning.SEQ_LEN)
    n_tok = ids.numel()

    rows = []

    def forward():
        with torch.no_grad():
            model.model(input_ids=ids, use_cache=False)

    forward()  # warm-up
    rows.append(("dense forward pass (decoder layers)", *median_time(forward, args.repeats)))
    rows.append(("sublayer importance (hooked forward)",
                 *median_time(lambda: helpers.sublayer_importance(model, tok, ids), args.repeats)))

    restore, fwd_times = [], []
    for method, opts in [("magnitude", {"sparsity": 0.5}), ("magnitude", {"sparsity": 0.5, "scope": "row"}),
                         ("wanda", {"sparsity": 0.5}),
                         ("wanda", {"pattern": "2:4"}), ("sparsegpt", {"sparsity": 0.5}),
                         ("sparsegpt", {"pattern": "2:4"})]:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            forward()
            fwd_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ctx = helpers.pruned(model, method, calibration=ids, **opts)
            ctx.__enter__()
            times.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            ctx.__exit__(None, None, None)
            restore.append(time.perf_counter() - t1)
        label = f"{method} " + (f"{opts['sparsity']:.0%}" if "sparsity" in opts else opts["pattern"]) \
            + (f" (scope={opts['scope']})" if "scope" in opts else "")
        rows.append((label, statistics.median(times), times))
    rows.append(("restore dense weights on exit", statistics.median(restore), restore))

    print(f"\nSmolLM2-135M-Instruct, float32, CPU: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; calibration {ids.shape[0]} x {ids.shape[1]} = "
          f"{n_tok} tokens; median of {args.repeats}.\n")
    unit = statistics.median(fwd_times)
    print(f"dense forward pass, interleaved with the pruning runs: median {unit:.2f} s "
          f"({len(fwd_times)} runs, {min(fwd_times):.2f}-{max(fwd_times):.2f} s)\n")
    print("| step | median (s) | x dense forward | runs (s) |")
    print("|---|---:|---:|---|")
    for label, med, times in rows:
        print(f"| {label} | {med:.2f} | {med / unit:.2f} | {', '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
