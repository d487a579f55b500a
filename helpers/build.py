"""Execute the notebooks headlessly and write them as HTML, with an index that links them in order.

The pages work offline. nbconvert's "lab" template loads MathJax and require.js from cdnjs, the
widget manager from unpkg (when widget state is saved) and Mermaid from cdnjs (when a diagram is
shown); here every one of those is replaced:

* MathJax 2.7 comes from the ``jupyter-server-mathjax`` package (the copy Jupyter itself serves),
  copied into ``<out>/_static/mathjax/`` and loaded by a relative path;
* require.js is dropped: it only served the widget manager;
* ipywidgets cannot run without a kernel and their JavaScript, so each widget output is replaced
  by a note that says so, followed by the figures the widget showed when the page was built (taken
  from the saved widget state); the saved state itself, and the loader, are left out;
* Mermaid diagrams, if any, stay as their source text.

``tests/test_book.py`` fails when a built page references anything on the network.
"""
from __future__ import annotations

import copy
import html
import json
import re
import shutil
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: where the bundled math renderer lies, relative to the pages (and inside the output folder)
MATHJAX_DIR = "_static/mathjax"
#: MathJax 2's combined configuration shipped by jupyter-server-mathjax (TeX input, HTML-CSS output)
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
#: set on <html> once MathJax has typeset the page (``tools/check_book.py`` waits for it)
TYPESET_ATTR = "data-book-math"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

WIDGET_NOTE = (
    '<div class="book-widget-note">Interactive widget: its controls need a running Jupyter kernel '
    "and cannot work on this offline page (open the notebook in JupyterLab, <code>make lab</code>, "
    "to use them). {what}</div>"
)

# The lab template, minus everything it would fetch from a CDN; MathJax from the local copy, set
# up for the fonts that copy ships (STIX-Web; the TeX web fonts are not in it).
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
.book-widget-note{margin:.5em 0;padding:.5em .8em;border-left:4px solid #e0a800;background:#fff8e1;
  font-size:var(--jp-content-font-size1,14px)}
</style>
{%- endblock extra_css -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  tex2jax: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  MMLorHTML: {prefer: "HTML"},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  displayAlign: "center",
  messageStyle: "none",
  menuSettings: {zoom: "None"}
});
MathJax.Hub.Queue(function () {
  document.documentElement.setAttribute("{{ resources.book_typeset_attr }}", "typeset");
});
</script>
<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
"""


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _tex_symbol(name: str) -> str:
    """``alpha`` -> α, ``Delta`` -> Δ; any other command keeps its name."""
    case = "CAPITAL" if name[:1].isupper() else "SMALL"
    try:
        return unicodedata.lookup(f"GREEK {case} LETTER {name.upper()}")
    except KeyError:
        return {"varepsilon": "ε", "cdot": "·", "times": "×", "to": "→", "ell": "ℓ"}.get(name, name)


def _inline_tex_html(tex: str) -> str:
    """Simple inline TeX (``p``, ``\\Delta h``, ``x_i^2``) as HTML, for the index page's titles."""
    tex = re.sub(r"\\([A-Za-z]+)(?:\s+(?=\w))?", lambda m: _tex_symbol(m.group(1)), tex)
    out = html.escape(tex.replace("\\", ""))
    out = re.sub(r"([_^])\{([^{}]*)\}|([_^])(\S)",
                 lambda m: ("<sub>{}</sub>" if (m.group(1) or m.group(3)) == "_" else "<sup>{}</sup>")
                 .format(m.group(2) if m.group(2) is not None else m.group(4)), out)
    return f"<i>{out.replace('{', '').replace('}', '')}</i>"


def title_html(title: str) -> str:
    """A notebook title as HTML: text escaped, ``$…$`` math set in italics (simple TeX only), a
    literal dollar (``\\$``) as ``&#36;``: no raw dollar sign is left for a reader to see."""
    parts = re.split(r"(?<!\\)\$\$?(.+?)(?<!\\)\$\$?", title)
    return "".join(_inline_tex_html(p) if i % 2 else html.escape(p.replace("\\$", "$")).replace("$", "&#36;")
                   for i, p in enumerate(parts))


def mathjax_source() -> Path:
    """The MathJax 2 folder shipped by ``jupyter-server-mathjax``."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:  # pragma: no cover - a dependency of the project
        raise RuntimeError("the offline book needs MathJax from the jupyter-server-mathjax package: "
                           "pip install jupyter-server-mathjax (make setup does)") from err
    src = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    if not (src / "MathJax.js").is_file():
        raise RuntimeError(f"jupyter-server-mathjax is installed but has no MathJax.js in {src}")
    return src


def copy_mathjax(out_dir: Path) -> Path:
    """Copy the bundled MathJax into ``out_dir/_static/mathjax`` (once per version)."""
    src = mathjax_source()
    dest = out_dir / MATHJAX_DIR
    stamp = dest / ".copied-from"
    tag = f"{src} {(src / 'MathJax.js').stat().st_size}"
    if not (stamp.is_file() and stamp.read_text() == tag and (dest / "MathJax.js").is_file()):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        stamp.write_text(tag)
    return dest


def _widget_outputs(state: dict, model_id: str, seen: set) -> list:
    """The outputs that Output widgets under ``model_id`` held when the notebook was executed."""
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    st = model.get("state", {})
    found = list(st.get("outputs", [])) if model.get("model_name") == "OutputModel" else []
    for child in st.get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            found += _widget_outputs(state, child[len("IPY_MODEL_"):], seen)
    return found


def static_widgets(nb):
    """A copy of ``nb`` whose widget outputs are replaced by a note and their static figures."""
    import nbformat

    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW) if out.get("output_type") in (
                "display_data", "execute_result") else None
            if view is None:
                outputs.append(out)
                continue
            shown = [nbformat.from_dict(o) for o in _widget_outputs(state, view.get("model_id", ""), set())]
            what = ("Below: what it showed at its initial settings when this page was built."
                    if shown else "The static figures on this page stand in for it.")
            outputs.append(nbformat.v4.new_output(
                "display_data", data={"text/html": WIDGET_NOTE.format(what=what),
                                      "text/plain": "[interactive widget: needs a running kernel]"}))
            outputs += shown
        cell.outputs = outputs
    return nb


def exporter():
    """nbconvert's HTML exporter, "lab" template, with nothing loaded from the network."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", raw_template=_TEMPLATE, mathjax_url=MATHJAX_URL,
                        require_js_url="", widget_renderer_url="", jupyter_widgets_base_url="",
                        mermaid_js_url="", mermaid_layout_elk_js_url="")


def render(nb, out_dir: Path, name: str) -> Path:
    """Write ``nb`` as ``out_dir/name.html`` (atomically) and return the path."""
    body, _ = exporter().from_notebook_node(
        static_widgets(nb), resources={"book_typeset_attr": TYPESET_ATTR, "metadata": {"name": name}})
    target = out_dir / (name + ".html")
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(target)
    return target


def build(notebooks=None, *, out: str = "build", timeout: int = 900, execute: bool = True) -> int:
    """Execute (unless ``execute=False``) and render the notebooks into ``out``, with an index.

    Returns 1 when a notebook failed to execute (its page is still written), else 0.
    """
    import nbformat
    from nbclient import NotebookClient

    paths = [Path(p) for p in notebooks] if notebooks else sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out_dir)
    rows, failed = [], 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        status = "ok" if execute else "not executed"
        if execute:
            try:
                NotebookClient(nb, timeout=timeout, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute()
            except Exception as err:  # keep going: write what ran, mark it failed
                status, failed = f"failed: {type(err).__name__}", failed + 1
        seconds = time.perf_counter() - t0
        target = render(nb, out_dir, path.stem)
        rows.append((path.stem, _title(nb), target.name, seconds, status))
        print(f"{path.name}: {status} in {seconds:.0f} s -> {target}", flush=True)
    items = "\n".join(
        f'<li><a href="{html.escape(href)}">{html.escape(stem)}</a> — {title_html(title)} '
        f'<small>({sec:.0f} s, {html.escape(st)})</small></li>'
        for stem, title, href, sec, st in rows
    )
    (out_dir / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>When pruning works</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:48em;margin:3em auto;line-height:1.5}"
        "</style><h1>When pruning works, seen through the representation hierarchy</h1>"
        "<p>The executed notebooks of the series, in order. The pages need no network: the "
        "equations are typeset by a copy of MathJax in <code>_static/</code>, and the interactive "
        "widgets, which need a running kernel, are shown as static figures.</p>"
        f"<ol>{items}</ol>", encoding="utf-8")
    (out_dir / "timings.json").write_text(json.dumps(
        {stem: {"seconds": round(sec, 1), "status": st} for stem, _, _, sec, st in rows}, indent=1))
    print(f"wrote {out_dir / 'index.html'}")
    return 1 if failed else 0
