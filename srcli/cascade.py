"""Cascade planning: which model passes make up a scale, their sizes, seeds, steps and strengths.

One pass of the model covers its training range (and the scales below it); larger factors run as a
cascade of passes (``plan_cascade``, SR3's cascades with one scale-free model), with fewer steps at
the higher resolutions and a seed derived per pass (``stage_seed``).  The default strength of a pass
depends on its scale and init (``DEFAULT_STRENGTH``, or a checkpoint's own table).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .diffusion import NoiseSchedule, start_step, timestep_grid
from .errors import UsageError, is_real
from .noise import mix_seed
from .ops import scaled_size
from .options import DEFAULT_CONSISTENCY, DEFAULT_INIT, INITS, SamplingOptions

MIN_SCALE, MAX_SCALE = 1.5, 8.0
# Relative: a factor up to 0.01% beyond an end of the training range counts as inside it (4.0004x runs
# as one pass on a 2x-4x model, like 4x: float noise and rounded factors such as 8 / 2 must not
# split a run into passes).  The same margin decides how many passes a larger factor needs, so no
# factor falls between "one pass" and "a cascade".
SCALE_TOLERANCE = 1e-4
INTERMEDIATE_DTYPE = np.uint16  # the passes of a cascade hand their images on at 16 bits

# The default strength of one pass by its init and scale (Diff-SR's "perceptual recoverable field":
# too little noise leaves the blur of the start image, too much invents content).  The values come
# from benchmarks/strength_sweep.py (results/strength_sweep.md), which prints this table: fidelity
# first (>= bicubic + 1 dB on both held-out splits, tuning and validation), then detail.  Between
# the listed scales the strength is interpolated linearly, outside them the nearest entry holds.
DEFAULT_STRENGTH: dict[str, dict[float, float]] = {
    "encoder": {1.5: 0.4, 2.0: 0.4, 3.0: 0.2, 4.0: 0.4},
    "bicubic": {1.5: 0.4, 2.0: 0.4, 3.0: 0.4, 4.0: 0.6},
}


def check_scale(scale: float) -> float:
    """Any factor from MIN_SCALE to MAX_SCALE (fractional ones too); the output is round(scale x size)."""
    if not is_real(scale) or not MIN_SCALE <= scale <= MAX_SCALE:  # nan fails the comparison
        raise UsageError(f"scale must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {scale}")
    return float(scale)


def default_strength(scale: float, init: str = DEFAULT_INIT, table: Optional[dict] = None) -> float:
    """The strength of a pass at ``scale`` (linear between the entries of the table): from a model's
    own ``table`` ({init: {scale: strength}}, its ``info["default_strength"]``, written by the sweep
    that chose it) where it has one for ``init``, else from ``DEFAULT_STRENGTH`` (the clean model's)."""
    if init not in INITS:
        raise UsageError(f"unknown init {init!r} (choose {' or '.join(INITS)})")
    own = (table or {}).get(init)
    entries = {float(k): float(v) for k, v in own.items()} if own else DEFAULT_STRENGTH[init]
    scales, strengths = zip(*sorted(entries.items()))
    return float(np.interp(scale, scales, strengths))


def strength_table(table: Any, source: Optional[str]) -> Optional[dict]:
    """A checkpoint's own default strengths, checked: {init: {scale: strength in (0, 1]}}."""
    if table is None:
        return None
    try:
        ok = isinstance(table, dict) and all(
            init in INITS and isinstance(rows, dict) and rows
            and all(1 < float(k) <= MAX_SCALE and 0 < float(v) <= 1 for k, v in rows.items())
            for init, rows in table.items())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"{source or 'checkpoint'}: bad default_strength table in its metadata")
    return table


def plan_cascade(scale: float, train_range: tuple[float, float]) -> list[float]:
    """The factors of the model passes that make up ``scale``, in order.

    Up to the top of ``train_range`` one pass (also below its bottom: the resize projection and the
    scale embedding are continuous in the scale, and a small factor asks the model for less new
    detail, not for another kind).  Beyond it the fewest passes that each stay inside the range,
    each as large as the passes after it allow, so the real LR input gets the largest step and the
    later passes, which work on generated images, add as little as they can (SR3's cascades):
    with (2, 4), 8x = 4x then 2x, 6x = 3x then 2x, 5x = 2.5x then 2x.  ValueError when no such
    cascade exists (a narrow range, e.g. (4, 4) for 8x).
    """
    lo, hi = train_range
    if not 1.0 < lo <= hi:
        raise ValueError(f"bad scale range {lo:g}-{hi:g}")
    if scale <= hi * (1 + SCALE_TOLERANCE):
        return [scale]
    # the fewest passes of at most hi (1 + tolerance): more than one, since scale is beyond that
    passes = max(2, math.ceil(math.log(scale / (1 + SCALE_TOLERANCE)) / math.log(hi)))
    factors, rest = [], scale
    for left in range(passes, 1, -1):
        factor = min(hi, rest / lo ** (left - 1))
        factors.append(factor)
        rest /= factor
    factors.append(rest)
    if any(f < lo * (1 - SCALE_TOLERANCE) or f > hi * (1 + SCALE_TOLERANCE) for f in factors):
        raise ValueError(f"{scale:g}x is no product of {lo:g}x-{hi:g}x passes")
    return factors


def stage_seed(seed: int, stage: int) -> int:
    """The seed of pass ``stage`` of a cascade: the seed itself for the first pass (so a one-pass
    scale is unchanged), a hash of (seed, stage) after it, so later passes do not reuse the first
    pass's noise field at the same pixel positions."""
    return int(seed) if stage == 0 else mix_seed(seed, stage)


def image_seed(seed: int, name: str) -> int:
    """The seed of one image of a batch: ``seed`` mixed with the image's name (its path relative to
    the folder or pattern it was found through), so the images of a batch get unrelated noise fields
    while a rerun or another shard gives the same image the same seed."""
    digest = hashlib.sha256(Path(name).as_posix().encode("utf-8")).digest()
    return mix_seed(seed, int.from_bytes(digest[:8], "little"))


def cascade_sizes(size: tuple[int, int], scale: float, factors: Sequence[float]) -> list[tuple[int, int]]:
    """(H, W) after each pass: round(factors so far x size); the last is round(scale x size), the
    size a direct run gives."""
    return [scaled_size(size, math.prod(factors[: k + 1])) for k in range(len(factors) - 1)] + [scaled_size(size, scale)]


@dataclass(frozen=True)
class CascadePass:
    """One pass of the model: its factor, reverse steps of a full run (None: all T), strength and
    the image a strength < 1 start noises (``options.INITS``), and its back-projection."""

    scale: float
    steps: Optional[int]
    strength: float
    init: str = DEFAULT_INIT
    consistency: int = DEFAULT_CONSISTENCY

    def options(self, base: SamplingOptions) -> SamplingOptions:
        """``base`` (sampler, eta, temperature) with this pass's steps, strength, init and consistency."""
        return base.replace(steps=self.steps, strength=self.strength, init=self.init, consistency=self.consistency)

    def steps_run(self, schedule: NoiseSchedule) -> int:
        """The reverse steps this pass actually runs: the strength's share of ``steps`` (or of T)."""
        t0 = start_step(schedule, self.strength)
        return len(timestep_grid(t0, SamplingOptions(steps=self.steps).steps_from(schedule.T, t0)))


def plan_passes(
    scale: float,
    options: SamplingOptions,
    scale_range: tuple[float, float],
    T: int,
    strengths: Optional[dict] = None,
    consistency: int = DEFAULT_CONSISTENCY,
    fixed_scale: Optional[int] = None,
    source: Optional[str] = None,
) -> list[CascadePass]:
    """The passes of ``scale`` (``plan_cascade`` over a model's ``scale_range``): pass k runs
    steps / 2**k reverse steps (SR3: fewer steps at higher resolution, where a step costs more and
    has less left to add) with ``options.strength`` or, when None, ``default_strength`` of its own
    factor from the model's table ``strengths``; ``consistency`` is the model's default
    back-projection.  A model with a ``fixed_scale`` runs that scale and its powers only.
    UsageError (naming the checkpoint ``source``) when the model cannot make the scale."""
    scale = check_scale(scale)
    try:
        factors = plan_cascade(scale, scale_range)
    except ValueError:
        factors = []
    if fixed_scale is not None and not (factors and all(math.isclose(f, fixed_scale) for f in factors)):
        powers = [f"{fixed_scale**k}x" for k in range(1, 4) if fixed_scale**k <= MAX_SCALE]
        allowed = powers[0] if len(powers) == 1 else f"{', '.join(powers[:-1])} or {powers[-1]} (as cascades of {fixed_scale}x passes)"
        raise UsageError(
            f"{source or 'this checkpoint'} is fixed to {fixed_scale}x (the SRDiff authors' transposed projection): "
            f"it upscales by {allowed} only, not {scale:g}x"
        )
    if not factors:
        raise UsageError(f"{scale:g}x cannot be made of passes of {scale_range[0]:g}x-{scale_range[1]:g}x, the range this model was trained on")
    full = T if options.steps is None else min(options.steps, T)
    iterations = consistency if options.consistency is None else options.consistency
    return [
        CascadePass(
            f, options.steps if k == 0 else max(1, round(full / 2**k)),
            default_strength(f, options.init, strengths) if options.strength is None else options.strength,
            options.init, iterations,
        )
        for k, f in enumerate(factors)
    ]


def plan_note(scale: float, passes: Sequence[CascadePass], scale_range: tuple[float, float], T: int) -> Optional[str]:
    """One line for the user when ``scale`` does not run as one pass inside the training range."""
    low, high = scale_range
    if len(passes) > 1:
        steps = " then ".join(f"{p.scale:g}x ({p.steps or T} steps, strength {p.strength:g})" for p in passes)
        return f"{scale:g}x runs as a cascade: {steps}; one pass covers up to {high:g}x"
    if passes[0].scale < low * (1 - SCALE_TOLERANCE):
        return f"{scale:g}x is below the {low:g}x-{high:g}x the model was trained on; it runs as one pass"
    return None


class ChainedProgress:
    """Joins the ``(done, total)`` reports of successive passes into one count: the steps of
    finished passes stay done and the total grows when a pass starts."""

    def __init__(self, callback: Optional[Callable[[int, int], None]]):
        self.callback, self.offset, self.total = callback, 0, 0

    def next_pass(self) -> Optional[Callable[[int, int], None]]:
        self.offset, self.total = self.offset + self.total, 0
        if self.callback is None:
            return None

        def update(done: int, total: int) -> None:
            self.total = total
            self.callback(self.offset + done, self.offset + total)

        return update
