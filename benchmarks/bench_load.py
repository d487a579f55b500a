"""Time the model loader: cold (convert the GGUF into a fresh cache) and warm (cached) loads.

    .venv/bin/python benchmarks/bench_load.py [--skip-cold]

Each warm load runs in a fresh Python process, as a notebook kernel would; the time printed is
the ``helpers.load_model()`` call alone, then the same call again in the same process (when
transformers' modules are already imported).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, time
t0 = time.perf_counter(); import helpers, transformers, torch; t_import = time.perf_counter() - t0
t0 = time.perf_counter(); m, t = helpers.load_model(); first = time.perf_counter() - t0
t0 = time.perf_counter(); m, t = helpers.load_model(); again = time.perf_counter() - t0
print(json.dumps({"import": t_import, "first": first, "again": again}))
"""


def child(env) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    import helpers

    print(f"torch threads: {os.cpu_count()} cpus")
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp:
            # keep the downloaded GGUF (a PyPI download is not what we time), convert afresh
            spec = helpers.PACKAGED["smollm2-135m"]
            gguf = helpers.cache_dir() / "gguf" / spec.gguf_name
            helpers.prepare()
            os.makedirs(os.path.join(tmp, "gguf"))
            os.symlink(gguf, os.path.join(tmp, "gguf", spec.gguf_name))
            cold = child(dict(env, PRUNING_COURSE_CACHE=tmp))
        print(f"cold (convert GGUF -> cache, then load): {cold['first']:.1f} s")
    runs = [child(env) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"warm, fresh process: import helpers+transformers {med['import']:.2f} s, "
          f"load_model() {med['first']:.2f} s (median of {args.repeats})")
    print(f"warm, same process again: load_model() {med['again']:.2f} s")


if __name__ == "__main__":
    main()
