"""The exponential moving average of the noise predictor's weights (what ships and samples)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``module`` pulled towards it after every stage-2 step."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    def rate(self, step: int) -> float:
        """The decay at stage-2 step ``step``: a warm-up so that the random initial weights are
        forgotten fast, then ``decay``."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        keep = self.rate(step)
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach(), 1 - keep)
