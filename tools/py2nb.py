"""Author a notebook as a percent-format script and write it as a clean .ipynb (no outputs).

    python tools/py2nb.py draft.py notebooks/NN_name.ipynb

Cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown; each line starts with ``# ``).
A code cell whose first line is ``# tags: a, b`` gets those cell tags (e.g. ``hide-input``).
"""
from __future__ import annotations

import re
import sys

import nbformat


def convert(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines).strip("\n")))
        else:
            tags = []
            first, _, rest = body.partition("\n")
            if first.startswith("# tags:"):
                tags = [t.strip() for t in first[len("# tags:"):].split(",") if t.strip()]
                body = rest
            cell = nbformat.v4.new_code_cell(body.strip("\n"))
            if tags:
                cell.metadata["tags"] = tags
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"c{i:03d}"
    return nb


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    nbformat.write(convert(open(src, encoding="utf-8").read()), dst)
    print(f"wrote {dst}")
