"""The sampling options: one frozen object that says how the reverse process runs.

The CLI builds it once from its flags (``srcli.cli.options``) and hands it down through
``SRPipeline``, ``explore``, ``evaluate``, the engine and ``diffusion.reverse_process``; it checks
itself when made, so nothing below checks it again.  The Python API also takes the fields as keyword
arguments (``pipe.upscale(img, steps=10)``), which build the same object (``SamplingOptions.of``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import UsageError, is_int, is_real

# Reverse steps of a full T-step run (a start at strength F runs F x that: 8 at the 4x default of 0.4).
# 20 is the count the per-scale default strengths were tuned at (benchmarks/strength_sweep.py); it was
# 25 until 2026-11-29: clean-model validation 31.60 -> 31.64 dB at 4x, one U-Net call in five fewer
# (docs/speed.md, "Fewer steps").
DEFAULT_STEPS = 20
DEFAULT_SAMPLER = "ddpm"
SAMPLERS = ("ddpm", "ddim")
# The image a strength < 1 start noises: SRDiff's own RRDB regression output, which the encoder
# computes anyway, or the bicubic upsampling of the Diff-SR paper.
INITS = ("encoder", "bicubic")
DEFAULT_INIT = "encoder"
DEFAULT_CONSISTENCY = 5  # back-projection iterations; 0 gives the sampler's raw output
SEED_LIMIT = 2**63  # seeds lie in [0, 2^63): torch's seed range on every platform, never wrapped


@dataclass(frozen=True)
class SamplingOptions:
    """How one reverse process runs.

    steps        reverse steps of a full T-step run (respaced); a start at t takes the share t / T;
                 None: every step (the paper's loop); more than T runs T
    sampler      "ddpm" (ancestral, respaced betas) or "ddim"
    eta          DDIM's noise scale in [0, 1] (1 = DDPM's variance); unused by "ddpm"
    temperature  scale of the injected noise (1 = the model's distribution, 0 = deterministic)
    strength     the Diff-SR start as a share of T in (0, 1]; None: the per-scale default
    init         the image a strength < 1 start noises (``INITS``)
    consistency  back-projection iterations after sampling; None: the model's default
    deblock      take the JPEG coding steps out of the input's 8 px block edges before it is
                 enlarged (``srcli.deblock``); None: the model's default (on for a model trained
                 on real-world degradations)
    """

    steps: Optional[int] = DEFAULT_STEPS
    sampler: str = DEFAULT_SAMPLER
    eta: float = 0.0
    temperature: float = 1.0
    strength: Optional[float] = None
    init: str = DEFAULT_INIT
    consistency: Optional[int] = None
    deblock: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.steps is not None and (not is_int(self.steps) or self.steps < 1):
            raise UsageError(f"steps must be a positive integer, got {self.steps}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler {self.sampler!r} (choose {' or '.join(SAMPLERS)})")
        if not (is_real(self.eta) and 0.0 <= self.eta <= 1.0):  # nan fails the comparison
            raise UsageError(f"eta must be a number from 0 to 1, got {self.eta}")
        if not (is_real(self.temperature) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"temperature must be a finite number >= 0 (1 = the model's distribution), got {self.temperature}")
        if self.strength is not None and not (is_real(self.strength) and 0.0 < self.strength <= 1.0):
            raise UsageError(f"strength must be in (0, 1], got {self.strength}")
        init = DEFAULT_INIT if self.init is None else self.init
        if init not in INITS:
            raise UsageError(f"unknown init {init!r} (choose {' or '.join(INITS)})")
        if self.consistency is not None and (not is_int(self.consistency) or self.consistency < 0):
            raise UsageError(f"consistency must be a whole number >= 0, got {self.consistency}")
        if self.deblock is not None and not isinstance(self.deblock, (bool, np.bool_)):
            raise UsageError(f"deblock must be True, False or None (the model's default), got {self.deblock!r}")
        # plain Python numbers from here on (numpy scalars or ints for floats would leak into JSON)
        normal = {
            "steps": None if self.steps is None else int(self.steps), "eta": float(self.eta),
            "temperature": float(self.temperature), "strength": None if self.strength is None else float(self.strength),
            "init": init, "consistency": None if self.consistency is None else int(self.consistency),
            "deblock": None if self.deblock is None else bool(self.deblock),
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, options: Optional["SamplingOptions"] = None, **fields: Any) -> "SamplingOptions":
        """``options`` with ``fields`` changed (a fresh object from ``fields`` when None): what the
        keyword arguments of the public functions build."""
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
        if options is None:
            return cls(**fields)
        return dataclasses.replace(options, **fields) if fields else options

    def replace(self, **fields: Any) -> "SamplingOptions":
        return dataclasses.replace(self, **fields)

    def steps_from(self, T: int, t_start: int) -> int:
        """The reverse steps a run from ``t_start`` takes: the share t_start / T of ``steps``
        (every step of the run when ``steps`` is None), at least 1 and at most t_start."""
        if self.steps is None:
            return t_start
        return min(t_start, max(1, round(self.steps * t_start / T)))


# the paper's exact loop: every step, DDPM, full temperature
EXACT = SamplingOptions(steps=None)


def check_seed(seed: int, what: str = "seed") -> int:
    """An integer seed in [0, 2^63); a larger or negative one is refused rather than wrapped onto another."""
    if not is_int(seed) or not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"{what} must be an integer from 0 to 2^63-1, got {seed}")
    return int(seed)


def check_output_kind(output: str) -> str:
    """``"pil"`` (Pillow images, the default of every public function) or ``"numpy"`` (uint8 arrays)."""
    if output not in ("pil", "numpy"):
        raise UsageError(f"output must be 'pil' or 'numpy', got {output!r}")
    return output
