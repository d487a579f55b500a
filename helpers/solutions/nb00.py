"""Reference solutions for notebook 00's exercises, and the wrong answers the tests must reject."""
from __future__ import annotations

import torch


def softmax_with_temperature(z: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    x = z / T
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _unstable(z, T=1.0):                       # exp(1000) = inf: NaN after normalising
    e = torch.exp(z / T)
    return e / e.sum(dim=-1, keepdim=True)


def _times_temperature(z, T=1.0):              # multiplies by T instead of dividing
    return softmax_with_temperature(z * T, 1.0)


def _wrong_axis(z, T=1.0):                     # normalises over the batch, not the vocabulary
    x = z / T
    e = torch.exp(x - x.max())
    return e / e.sum(dim=0, keepdim=True)


WRONG = {"softmax_with_temperature": [_unstable, _times_temperature, _wrong_axis]}
