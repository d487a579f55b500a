"""Two context managers for temporary changes to modules: hooks that are always removed, and a
replaced ``forward`` that is always put back (also when the code inside raises)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

from torch import nn

__all__ = ["hooked", "patched_forward"]


@contextlib.contextmanager
def hooked(registrations: Iterable[tuple]) -> Iterator[list]:
    """Register forward hooks for the duration of a ``with`` block; remove every one on exit.

    Each registration is ``(module, when, fn)`` or ``(module, when, fn, with_kwargs)`` with
    ``when`` = ``"pre"`` (:meth:`torch.nn.Module.register_forward_pre_hook`) or ``"post"``
    (:meth:`~torch.nn.Module.register_forward_hook`). Yields the handles. Hooks registered before a
    failing registration are removed too.
    """
    handles = []
    try:
        for module, when, fn, *kw in registrations:
            with_kwargs = bool(kw and kw[0])
            if when == "pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
            elif when == "post":
                handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs))
            else:
                raise ValueError(f"when must be 'pre' or 'post', got {when!r}.")
        yield handles
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def patched_forward(module: nn.Module, forward: Callable) -> Iterator[nn.Module]:
    """Replace ``module.forward`` by ``forward`` inside the block; put the old one back on exit.

    Nested patches of one module unwind in reverse order, each restoring what it found (an
    instance attribute, or none: then the class's ``forward`` shows through again).
    """
    old = module.__dict__.get("forward", None)
    module.forward = forward
    try:
        yield module
    finally:
        if old is None:
            module.__dict__.pop("forward", None)
        else:
            module.forward = old
