"""Checks for the exercises: ``helpers.checks.<name>(your_function)``.

Every exercise in a notebook has a starter cell (a function whose body is ``...`` or
``raise NotImplementedError``) and a check call. A check runs your function on a few cases
(constructed tensors, edge cases, or a tiny model, so it takes a second), and prints

* ``✓ <name>: passed (N cases)``, or
* ``✗ <name>: <the first failing case> — hint: ...``, or
* ``· <name>: not attempted`` when the function is still the starter (never an error: the notebook
  runs top to bottom either way).

It returns True, False or None accordingly. Reference solutions live in :mod:`helpers.solutions`,
outside the notebooks; the tests check that every check passes its reference solution and fails
at least one plausible wrong answer.

Checks are written with :func:`exercise` and :func:`verify` in one module per notebook
(``helpers/checks/nb04.py``, ...); every one is reachable as ``helpers.checks.<name>``.
"""
from __future__ import annotations

import importlib
import pkgutil

from ._harness import EXERCISES, Case, Exercise, close, exercise, verify

__all__ = ["Case", "EXERCISES", "Exercise", "close", "exercise", "verify", "load_all"]


def load_all() -> dict:
    """Import every per-notebook check module; return the registry ``{name: Exercise}``."""
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")
    return EXERCISES


def __getattr__(name):
    load_all()
    if name in EXERCISES:
        return EXERCISES[name].check
    raise AttributeError(f"helpers.checks has no check {name!r}; known: {sorted(EXERCISES)}")


def __dir__():
    return sorted(set(__all__) | set(load_all()))
