"""helpers: the small package shared by the notebooks of *When pruning works*.

The notebooks show the ideas; this package does the plumbing. Public names are stable.
"""
from __future__ import annotations

import os as _os

# Nothing is fetched from a model hub unless a user names a hub model and is online.
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from . import plots  # noqa: E402
from .arch import Arch, UnsupportedModelError, arch  # noqa: E402
from . import metrics  # noqa: E402
from .models import (PACKAGED, ModelNotAvailableError, cache_dir, device, load_model,  # noqa: E402
                     prepare, tokenizer_for)

__version__ = "0.1.0"

__all__ = [
    "Arch", "ModelNotAvailableError", "PACKAGED", "UnsupportedModelError", "arch", "cache_dir",
    "device", "load_model", "metrics", "plots", "prepare", "seed_everything", "tokenizer_for",
]


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that a run can be reproduced."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

from .trace import Trace, compare, trace, transitions  # noqa: E402

__all__ += ["Trace", "compare", "trace", "transitions"]

from .corpus import load_calibration, load_heldout  # noqa: E402
from .evaluation import perplexity  # noqa: E402
from .pruning import PruneResult, pruned, sparsity_report, sublayer_importance  # noqa: E402

__all__ += ["PruneResult", "load_calibration", "load_heldout", "perplexity", "pruned",
            "sparsity_report", "sublayer_importance"]

from . import perturb, widgets  # noqa: E402

__all__ += ["perturb", "widgets"]
