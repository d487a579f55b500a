"""Execute the notebooks headlessly and write them as HTML, with an index that links them in order."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def build(notebooks=None, *, out: str = "build", timeout: int = 900) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    paths = [Path(p) for p in notebooks] if notebooks else sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    rows, failed = [], 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        status = "ok"
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as err:  # keep going: write what ran, mark it failed
            status, failed = f"failed: {type(err).__name__}", failed + 1
        seconds = time.perf_counter() - t0
        body, _ = exporter.from_notebook_node(nb)
        target = out_dir / (path.stem + ".html")
        tmp = target.with_suffix(".html.tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(target)
        rows.append((path.stem, _title(nb), target.name, seconds, status))
        print(f"{path.name}: {status} in {seconds:.0f} s -> {target}", flush=True)
    items = "\n".join(
        f'<li><a href="{html.escape(href)}">{html.escape(stem)}</a> — {html.escape(title)} '
        f'<small>({sec:.0f} s, {html.escape(st)})</small></li>'
        for stem, title, href, sec, st in rows
    )
    (out_dir / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>When pruning works</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:48em;margin:3em auto;line-height:1.5}"
        "</style><h1>When pruning works, seen through the representation hierarchy</h1>"
        "<p>The executed notebooks of the series, in order.</p>"
        f"<ol>{items}</ol>", encoding="utf-8")
    (out_dir / "timings.json").write_text(json.dumps(
        {stem: {"seconds": round(sec, 1), "status": st} for stem, _, _, sec, st in rows}, indent=1))
    print(f"wrote {out_dir / 'index.html'}")
    return 1 if failed else 0
