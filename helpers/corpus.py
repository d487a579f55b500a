"""The small text sets that ship with the series, loaded through `datasets`.

* ``calibration.jsonl``: about forty short paragraphs (encyclopedic, narrative, dialogue,
  instructions, science), written for this project, used to calibrate Wanda and SparseGPT and to
  score sublayer importance.
* ``heldout.jsonl``: different paragraphs, never used for calibration, for perplexity.
* ``heldout_domains.jsonl``: held-out texts of several domains (``{"text": ..., "domain": ...}``),
  never used for calibration, to see how pruning calibrated on one kind of text does on others
  (:func:`load_heldout_domains`).

Both are JSON Lines files with one ``{"text": ...}`` object per line, read with
``datasets.load_dataset("json", data_files=...)``: the same code path that reads a hub data set.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "load_calibration", "load_heldout", "load_heldout_domains", "load_texts"]

DATA_DIR = Path(__file__).resolve().parent / "data"


def load_texts(path, *, as_dataset: bool = False):
    """Texts of a JSON Lines file with a ``"text"`` field (a list of str, or the Dataset)."""
    import datasets
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    if "text" not in ds.column_names:
        raise ValueError(f"{path} has no 'text' field (columns: {ds.column_names}).")
    return ds if as_dataset else list(ds["text"])


def load_calibration(*, as_dataset: bool = False):
    """The shipped calibration paragraphs (list of str; ``as_dataset=True`` for the Dataset)."""
    return load_texts(DATA_DIR / "calibration.jsonl", as_dataset=as_dataset)


def load_heldout(*, as_dataset: bool = False):
    """The shipped held-out paragraphs for perplexity (list of str, or the Dataset)."""
    return load_texts(DATA_DIR / "heldout.jsonl", as_dataset=as_dataset)


def load_heldout_domains(*, as_dataset: bool = False):
    """The held-out texts by domain: ``{domain: [texts]}`` in the order the domains first appear
    (``as_dataset=True``: the Dataset, with columns ``text`` and ``domain``)."""
    ds = load_texts(DATA_DIR / "heldout_domains.jsonl", as_dataset=True)
    if "domain" not in ds.column_names:
        raise ValueError(f"heldout_domains.jsonl has no 'domain' field (columns: {ds.column_names}).")
    if as_dataset:
        return ds
    out: dict[str, list[str]] = {}
    for text, domain in zip(ds["text"], ds["domain"]):
        out.setdefault(domain, []).append(text)
    return out
