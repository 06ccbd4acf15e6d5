"""The Python API: a pipeline object that turns images into SR images with a loaded checkpoint.

    pipe = SRPipeline.from_pretrained()                 # the shipped model, CUDA+fp16 if present
    out = pipe.upscale(Image.open("in.png"), scale=4, steps=25, seed=0)
    data = pipe.upscale_image(read_image("in.png"), scale=4)   # 16-bit, alpha, ICC (srcli.imageio)

The CLI is a thin layer over this class.  Images go in and out as PIL images (or uint8 arrays), or as
``imageio.ImageData``; everything between is tensors in [-1, 1] handled by ``engine``, cut into
tiles by ``tiling`` when large.  All noise is position-keyed (``tiling.field_noise``): a seed gives
the same noise at the same HR pixel whether the image is tiled or not.

Scales: any factor in [1.5, 8].  One pass of the model covers its training range (and the scales
below it); larger factors run as a cascade of passes (``plan_cascade``, SR3's cascades with one
scale-free model), each pass tiled on its own, with fewer steps at the higher resolutions and a seed
derived per pass (``stage_seed``).  ``strength`` is the Diff-SR start (the share of T the reverse
process starts from) and ``init`` the image noised for it (``engine.INITS``: the encoder's regression
output by default, or bicubic); the default strength depends on the scale and the init
(``DEFAULT_STRENGTH``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_checkpoint
from .diffusion import NoiseFn, NoiseSchedule, timestep_grid
from .engine import (
    DEFAULT_CONSISTENCY, DEFAULT_INIT, DEFAULT_LR_UPSAMPLE, INITS, LR_UPSAMPLERS, Conditioned, reverse_steps, start_step, super_resolve,
)
from .imageio import ImageData, from_pil, resize_alpha, to_pil
from .nets import DEFAULT_UNET_MARGIN, SRDiffModel
from .ops import array_to_tensor, quantize, scaled_size
from .weights import resolve_weights
from .tiling import MIN_TILE, align_to_grid, auto_tile, field_noise, memory_budget, mix_seed, tiled_upscale

DEFAULT_STEPS = 25
DEFAULT_SAMPLER = "ddpm"
MIN_SCALE, MAX_SCALE = 1.5, 8.0

# The default strength of one pass by its init and scale (Diff-SR's "perceptual recoverable field":
# too little noise leaves the blur of the start image, too much invents content).  The values come
# from benchmarks/strength_sweep.py (results/strength_sweep.md), which prints this table: fidelity
# first (>= bicubic + 1 dB on both held-out splits, tuning and validation), then detail.  Between
# the listed scales the strength is interpolated linearly, outside them the nearest entry holds.
DEFAULT_STRENGTH: dict[str, dict[float, float]] = {
    "encoder": {1.5: 0.4, 2.0: 0.4, 3.0: 0.2, 4.0: 0.4},
    "bicubic": {1.5: 0.4, 2.0: 0.4, 3.0: 0.4, 4.0: 0.6},
}
_SCALE_TOLERANCE = 1e-6  # relative: 8 / 4 / 2 must count as exactly in range
INTERMEDIATE_DTYPE = np.uint16  # the passes of a cascade hand their images on at 16 bits
# channels_last on the CPU too: CPU time of a U-Net step of the c=32 model, 1 thread, -10% at
# 256x256 (0.37 -> 0.33 s) and -12% at 512x512 (1.40 -> 1.25 s); a whole upscale (encoder and 8
# steps) -10% and -10..24%; the noise prediction moves by 1e-7 (one pixel in 200k one level off).
CPU_CHANNELS_LAST = True


class UsageError(ValueError):
    """A bad argument (scale, device, steps, ...): reported before any work starts."""


def resolve_device(device: str = "auto") -> torch.device:
    """auto -> cuda when available, else cpu.  Asking for cuda without CUDA is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available on this machine (use cpu or auto)")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device {device!r} (choose auto, cpu or cuda)")


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).  Elsewhere oneDNN
    emulates bf16, slower than fp32, so auto precision stays fp32 there."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the networks' weights and activations: auto -> fp16 on CUDA, bf16 on a CPU with
    native bf16 (``cpu_has_native_bf16``), else fp32.  Every precision runs on every device (fp16 on
    the CPU is slow but is the exact code path CUDA runs); image-space tensors stay float32 whatever
    is chosen."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose auto, {', '.join(PRECISIONS)})")
    return PRECISIONS[precision]


def check_scale(scale: float) -> float:
    """Any factor from MIN_SCALE to MAX_SCALE (fractional ones too); the output is round(scale x size)."""
    ok = isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(scale, bool)
    if not ok or not MIN_SCALE <= scale <= MAX_SCALE:  # nan fails the comparison
        raise UsageError(f"scale must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {scale}")
    return float(scale)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_steps(steps: Optional[int]) -> Optional[int]:
    """None (every step of the model) or a positive number of reverse steps (more than the model's
    T means T: the samplers clamp)."""
    if steps is None:
        return None
    if not _is_int(steps) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps}")
    return int(steps)


def check_tile(tile: Optional[int]) -> Optional[int]:
    """None (auto from a memory budget), 0 (no tiling) or an HR tile side of at least MIN_TILE px."""
    if tile is not None and (not _is_int(tile) or (tile != 0 and tile < MIN_TILE)):
        raise UsageError(f"tile must be 0 (off) or at least {MIN_TILE} px, got {tile}")
    return tile


def check_tile_batch(batch: Optional[int]) -> Optional[int]:
    if batch is not None and (not _is_int(batch) or batch < 1):
        raise UsageError(f"tile batch must be a positive integer, got {batch}")
    return batch


def check_sampler(sampler: str) -> str:
    if sampler not in ("ddpm", "ddim"):
        raise UsageError(f"unknown sampler {sampler!r} (choose ddpm or ddim)")
    return sampler


def check_strength(strength: Optional[float]) -> Optional[float]:
    """Where the reverse process starts, as a fraction of T: (0, 1] (1 = from pure noise), or None
    for the per-scale default (``default_strength``)."""
    if strength is None:
        return None
    if not (isinstance(strength, (int, float)) and not isinstance(strength, bool) and 0.0 < strength <= 1.0):
        raise UsageError(f"strength must be in (0, 1], got {strength}")
    return float(strength)


SEED_LIMIT = 2**63  # seeds lie in [0, 2^63): torch's seed range on every platform, never wrapped


def check_seed(seed: int, what: str = "seed") -> int:
    """An integer seed in [0, 2^63); a larger or negative one is refused rather than wrapped onto another."""
    if not _is_int(seed) or not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"{what} must be an integer from 0 to 2^63-1, got {seed}")
    return int(seed)


def check_temperature(temperature: float) -> float:
    """The scale of the injected noise: a finite number >= 0 (nan or a negative one gives garbage)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (math.isfinite(temperature) and temperature >= 0):
        raise UsageError(f"temperature must be a finite number >= 0 (1 = the model's distribution), got {temperature}")
    return float(temperature)


def check_init(init: Optional[str]) -> str:
    """The image a strength < 1 start noises: one of ``engine.INITS`` (None: the default)."""
    if init is None:
        return DEFAULT_INIT
    if init not in INITS:
        raise UsageError(f"unknown init {init!r} (choose {' or '.join(INITS)})")
    return init


def check_consistency(consistency: Optional[int]) -> Optional[int]:
    """None (the model's default, ``SRPipeline.default_consistency``) or a number of
    back-projection iterations >= 0 (0: the sampler's own output)."""
    if consistency is not None and (not _is_int(consistency) or consistency < 0):
        raise UsageError(f"consistency must be a whole number >= 0, got {consistency}")
    return consistency


def default_strength(scale: float, init: str = DEFAULT_INIT, table: Optional[dict] = None) -> float:
    """The strength of a pass at ``scale`` (linear between the entries of the table): from a model's
    own ``table`` ({init: {scale: strength}}, its ``info["default_strength"]``, written by the sweep
    that chose it) where it has one for ``init``, else from ``DEFAULT_STRENGTH`` (the clean model's)."""
    init = check_init(init)
    own = (table or {}).get(init)
    entries = {float(k): float(v) for k, v in own.items()} if own else DEFAULT_STRENGTH[init]
    scales, strengths = zip(*sorted(entries.items()))
    return float(np.interp(scale, scales, strengths))


def _strength_table(table: Any, source: Optional[str]) -> Optional[dict]:
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
    if scale <= hi * (1 + _SCALE_TOLERANCE):
        return [scale]
    passes = math.ceil(math.log(scale) / math.log(hi) - _SCALE_TOLERANCE)
    factors, rest = [], scale
    for left in range(passes, 1, -1):
        factor = min(hi, rest / lo ** (left - 1))
        factors.append(factor)
        rest /= factor
    factors.append(rest)
    if any(f < lo * (1 - _SCALE_TOLERANCE) or f > hi * (1 + _SCALE_TOLERANCE) for f in factors):
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


def check_output_kind(output: str) -> str:
    """``"pil"`` (Pillow images, the default of every public function) or ``"numpy"`` (uint8 arrays)."""
    if output not in ("pil", "numpy"):
        raise UsageError(f"output must be 'pil' or 'numpy', got {output!r}")
    return output


def cascade_sizes(size: tuple[int, int], scale: float, factors: Sequence[float]) -> list[tuple[int, int]]:
    """(H, W) after each pass: round(factors so far x size); the last is round(scale x size), the
    size a direct run gives."""
    return [scaled_size(size, math.prod(factors[: k + 1])) for k in range(len(factors) - 1)] + [scaled_size(size, scale)]


@dataclass(frozen=True)
class Stage:
    """One pass of the model: its factor, reverse steps of a full run (None: all T), strength and
    the image a strength < 1 start noises (``engine.INITS``)."""

    scale: float
    steps: Optional[int]
    strength: float
    init: str = DEFAULT_INIT
    consistency: int = DEFAULT_CONSISTENCY

    def steps_run(self, schedule: NoiseSchedule) -> int:
        """The reverse steps this pass actually runs: the strength's share of ``steps`` (or of T)."""
        t0 = start_step(schedule, self.strength)
        return len(timestep_grid(t0, reverse_steps(schedule, t0, self.steps) or t0))


@dataclass
class StepProgress:
    """What a progress callback receives: ``done`` of ``total`` reverse steps of the current image."""

    done: int
    total: int


class SRPipeline:
    """A loaded SRDiff model ready to upscale images.  Thread-compatible, not thread-safe."""

    def __init__(
        self,
        model: SRDiffModel,
        schedule: NoiseSchedule,
        info: Optional[dict[str, Any]] = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        source: Optional[str] = None,
    ):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.schedule = schedule
        self.info = info or {}
        self.source = source
        self.lr_upsample = self.info.get("lr_upsample", DEFAULT_LR_UPSAMPLE)
        self.unet_margin = int(self.info.get("unet_margin", DEFAULT_UNET_MARGIN))
        if self.lr_upsample not in LR_UPSAMPLERS:
            raise UsageError(f"{source or 'checkpoint'}: unknown lr_upsample {self.lr_upsample!r} in its metadata")
        self.default_strengths = _strength_table(self.info.get("default_strength"), source)
        # the weights in the chosen dtype (not autocast): the networks cast their inputs to it and
        # return float32 (see ``nets``), so one switch covers the weights and what is fed to them
        model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        # channels_last suits cuDNN's convolutions; on the CPU see CPU_CHANNELS_LAST
        self.channels_last = self.device.type == "cuda" or CPU_CHANNELS_LAST
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def from_pretrained(
        cls, weights: Optional[str] = None, device: str = "auto", precision: str = "auto", model: Optional[str] = None
    ) -> "SRPipeline":
        """Load a srcli checkpoint: ``weights`` (a path, a name looked up as ``srcli.weights``
        describes, or ``hf://OWNER/REPO/FILE[@REVISION]``) or the shipped ``model`` by name
        (``srcli.weights.MODELS``: clean, real); neither: the default model."""
        if weights is not None and model is not None:
            raise UsageError("--model and --weights are alternatives: give one of them")
        dev = resolve_device(device)
        resolve_precision(precision, dev)  # fail on bad arguments before reading the file
        path = resolve_weights(weights, model)
        model, schedule, info = load_checkpoint(path, "cpu")
        return cls(model, schedule, info, dev, precision, source=str(path))

    @property
    def config(self):
        return self.model.config

    @property
    def default_consistency(self) -> int:
        """Back-projection iterations when none are asked for: 0 for a model trained on real-world
        degradations (``info["degradation"] == "real"``: its input is not the bicubic downscale
        of the output, so forcing the output to downscale to it would put the input's blur, noise
        and JPEG blocks back), else ``DEFAULT_CONSISTENCY``."""
        return 0 if self.info.get("degradation") == "real" else DEFAULT_CONSISTENCY

    @property
    def scale_range(self) -> tuple[float, float]:
        """The factors one pass runs: a fixed-scale checkpoint's own, else the training range."""
        fixed = self.config.fixed_scale
        return (float(fixed), float(fixed)) if fixed is not None else tuple(self.config.train_scales)

    def stages(
        self,
        scale: float,
        steps: Optional[int] = DEFAULT_STEPS,
        strength: Optional[float] = None,
        init: Optional[str] = None,
        consistency: Optional[int] = None,
    ) -> list[Stage]:
        """The passes of ``scale`` (``plan_cascade``): pass k runs steps / 2**k reverse steps (SR3:
        fewer steps at higher resolution, where a step costs more and has less left to add) with
        ``strength`` or, when None, ``default_strength`` of its own factor and the init.  A
        fixed-scale checkpoint runs its scale and its powers only.  Bad arguments raise UsageError."""
        scale, steps, strength = check_scale(scale), check_steps(steps), check_strength(strength)
        init = check_init(init)
        consistency = check_consistency(consistency)
        consistency = self.default_consistency if consistency is None else consistency
        fixed = self.config.fixed_scale
        try:
            factors = plan_cascade(scale, self.scale_range)
        except ValueError:
            factors = []
        if fixed is not None and not (factors and all(math.isclose(f, fixed) for f in factors)):
            powers = [f"{fixed**k}x" for k in range(1, 4) if fixed**k <= MAX_SCALE]
            allowed = powers[0] if len(powers) == 1 else f"{', '.join(powers[:-1])} or {powers[-1]} (as cascades of {fixed}x passes)"
            raise UsageError(
                f"{self.source or 'this checkpoint'} is fixed to {fixed}x (the SRDiff authors' transposed projection): "
                f"it upscales by {allowed} only, not {scale:g}x"
            )
        if not factors:
            low, high = self.scale_range
            raise UsageError(f"{scale:g}x cannot be made of passes of {low:g}x-{high:g}x, the range this model was trained on")
        full = self.schedule.T if steps is None else min(steps, self.schedule.T)
        return [
            Stage(
                f, steps if k == 0 else max(1, round(full / 2**k)), default_strength(f, init, self.default_strengths) if strength is None else strength,
                init, consistency,
            )
            for k, f in enumerate(factors)
        ]

    def plan_note(self, scale: float, stages: Sequence[Stage]) -> Optional[str]:
        """One line for the user when ``scale`` does not run as one pass inside the training range."""
        low, high = self.scale_range
        if len(stages) > 1:
            passes = " then ".join(f"{s.scale:.3g}x ({s.steps or self.schedule.T} steps, strength {s.strength:g})" for s in stages)
            return f"{scale:g}x runs as a cascade: {passes}; one pass covers up to {high:g}x"
        if stages[0].scale < low * (1 - _SCALE_TOLERANCE):
            return f"{scale:g}x is below the {low:g}x-{high:g}x the model was trained on; it runs as one pass"
        return None

    # -- tensors ---------------------------------------------------------------------------------
    def inference(self) -> contextlib.AbstractContextManager:
        """The context every network call of the pipeline runs in (no autograd)."""
        return torch.inference_mode()

    def to_input(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """PIL image or (H, W, 3) uint8/uint16 array -> (1, 3, H, W) float32 in [-1, 1] on the
        pipeline's device (float32 whatever the precision: the networks cast at their boundary)."""
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] != 3:
            raise UsageError("expected an RGB image (H, W, 3) of uint8 or uint16")
        return self._on_device(array_to_tensor(image))

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.device, dtype=torch.float32)

    def noise(self, seeds: Sequence[int], origins: Optional[Sequence[tuple[int, int]]] = None) -> NoiseFn:
        """The pipeline's noise: position-keyed, one field per seed (see ``tiling.field_noise``)."""
        return field_noise(seeds, origins)

    def condition(self, x_lr: torch.Tensor, out_size: tuple[int, int]) -> Conditioned:
        """Encode an LR batch once (the expensive part that never runs per step)."""
        with self.inference():
            return Conditioned(self.model, x_lr, out_size, self.lr_upsample, self.unet_margin)

    def sr_tensor(
        self,
        x_lr: torch.Tensor,
        out_size: tuple[int, int],
        seeds: Sequence[int],
        steps: Optional[int] = DEFAULT_STEPS,
        sampler: str = DEFAULT_SAMPLER,
        eta: float = 0.0,
        temperature: float = 1.0,
        strength: float = 1.0,
        callback: Optional[Callable[[int, int], None]] = None,
        cond: Optional[Conditioned] = None,
        origins: Optional[Sequence[tuple[int, int]]] = None,
        init: str = DEFAULT_INIT,
        consistency: Optional[int] = None,
    ) -> torch.Tensor:
        """SR of a batch of equally sized LR tensors, one seed per batch element (untiled).
        ``origins`` places each element on its image's HR grid (tiles); default (0, 0).
        ``consistency``: back-projection iterations (None: ``default_consistency``)."""
        self.model.check_scale(tuple(x_lr.shape[-2:]), tuple(out_size))
        consistency = check_consistency(consistency)
        with self.inference():
            return super_resolve(
                self.model, self.schedule, x_lr, out_size, self.noise(seeds, origins), steps=steps,
                sampler=sampler, eta=eta, temperature=temperature, strength=strength, callback=callback,
                cond=cond or self.condition(x_lr, out_size), init=init,
                consistency=self.default_consistency if consistency is None else consistency,
            )

    def sr_cascade(
        self,
        x_lr: torch.Tensor,
        stages: Sequence[Stage],
        sizes: Sequence[tuple[int, int]],
        seeds: Sequence[int],
        sampler: str = DEFAULT_SAMPLER,
        temperature: float = 1.0,
        callback: Optional[Callable[[int, int], None]] = None,
    ) -> torch.Tensor:
        """``len(seeds)`` samples of one LR tensor (1, 3, h, w) through the passes ``stages`` with
        output ``sizes`` (``stages`` and ``cascade_sizes``), untiled, in one batch: the first pass
        encodes the input once for all samples.  Between passes the images are rounded to 16 bits as
        ``upscale_image`` stores them, so sample i equals ``upscale_image(..., seed=seeds[i], tile=0)``."""
        n, x = len(seeds), x_lr
        progress = _ChainedProgress(callback)
        for k, (stage, size) in enumerate(zip(stages, sizes)):
            cond = self.condition(x, size)
            if x.shape[0] == 1 and n > 1:
                x, cond = x.expand(n, -1, -1, -1), cond.expand(n)
            x = self.sr_tensor(
                x, size, [stage_seed(s, k) for s in seeds], stage.steps, sampler, temperature=temperature,
                strength=stage.strength, callback=progress.next_pass(), cond=cond, init=stage.init,
                consistency=stage.consistency,
            )
            if k + 1 < len(stages):
                x = self._on_device(quantize(x, INTERMEDIATE_DTYPE))
        return x

    # -- images ----------------------------------------------------------------------------------
    def tile_settings(
        self, scale: float, tile: Optional[int] = None, tile_batch: Optional[int] = None
    ) -> tuple[int, int]:
        """(HR tile side or 0, tiles per batch): batches of 4 on CUDA, 1 on the CPU (no speed-up
        there); ``tile=None`` picks the largest tile whose batch fits the device's memory budget."""
        batch = check_tile_batch(tile_batch) or (4 if self.device.type == "cuda" else 1)
        tile = check_tile(tile)
        if tile is None:
            tile = auto_tile(self.config, scale, batch, memory_budget(self.device), self.dtype.itemsize)
        return tile, batch

    def upscale_image(
        self,
        image: ImageData,
        scale: float = 4.0,
        steps: Optional[int] = DEFAULT_STEPS,
        seed: int = 0,
        sampler: str = DEFAULT_SAMPLER,
        temperature: float = 1.0,
        strength: Optional[float] = None,
        callback: Optional[Callable[[int, int], None]] = None,
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
        init: Optional[str] = None,
        consistency: Optional[int] = None,
    ) -> ImageData:
        """Upscale an ``ImageData``: colour through the model (16-bit samples keep their precision
        into it and out of it), alpha with a classical filter, metadata carried over.  ``strength``
        None is the per-scale default, ``init`` None the default start image (``engine.INITS``).
        Scales beyond one pass run as a cascade (``stages``), each pass tiled on its own and handed
        on as a 16-bit image.  ``tile`` is the largest HR tile side
        in px (None: auto, 0: whole image); ``callback(done, total)`` counts reverse steps over all
        tiles and passes (the total grows as each pass starts).  ``consistency`` is the number of
        back-projection iterations per pass (None: ``default_consistency``, 0: off)."""
        check_sampler(sampler)
        stages = self.stages(scale, steps, strength, init, consistency)
        check_tile(tile)
        check_tile_batch(tile_batch)
        sizes = cascade_sizes(image.size, scale, [s.scale for s in stages])
        progress = _ChainedProgress(callback)
        x = self.to_input(image.rgb)
        for k, (stage, size) in enumerate(zip(stages, sizes)):
            last = k + 1 == len(stages)
            rgb = self._tiled_pass(
                x, size, stage, stage_seed(seed, k), sampler, temperature, tile, tile_batch,
                image.rgb.dtype if last else INTERMEDIATE_DTYPE, progress.next_pass(),
            )
            if not last:
                x = self.to_input(rgb)
        alpha = resize_alpha(image.alpha, sizes[-1]) if image.alpha is not None else None
        return image.replace(rgb, alpha)

    def _tiled_pass(
        self,
        x_lr: torch.Tensor,
        out_size: tuple[int, int],
        stage: Stage,
        seed: int,
        sampler: str,
        temperature: float,
        tile: Optional[int],
        tile_batch: Optional[int],
        out_dtype: type,
        callback: Optional[Callable[[int, int], None]],
    ) -> np.ndarray:
        """One pass over a whole image (1, 3, h, w) in tiles sized for this pass's scale."""
        tile, batch = self.tile_settings(stage.scale, tile, tile_batch)
        multiple = self.model.denoise_fn.size_multiple

        def sr_batch(x, size, origins, step_callback):
            cond = align_to_grid(self.condition(x, size), origins, multiple)
            return self.sr_tensor(
                x, size, [seed] * x.shape[0], stage.steps, sampler, temperature=temperature, strength=stage.strength,
                callback=step_callback, cond=cond, origins=origins, init=stage.init, consistency=stage.consistency,
            )

        return tiled_upscale(
            sr_batch, x_lr, out_size, tile, batch_size=batch, min_size=2 * multiple, out_dtype=out_dtype, callback=callback,
        )

    def upscale(
        self,
        image: Image.Image | np.ndarray,
        scale: float = 4.0,
        steps: Optional[int] = DEFAULT_STEPS,
        seed: int = 0,
        sampler: str = DEFAULT_SAMPLER,
        temperature: float = 1.0,
        strength: Optional[float] = None,
        callback: Optional[Callable[[int, int], None]] = None,
        tile: Optional[int] = None,
        tile_batch: Optional[int] = None,
        init: Optional[str] = None,
        consistency: Optional[int] = None,
        output: str = "pil",
    ) -> Image.Image | np.ndarray:
        """Upscale one image by ``scale`` (output size round(scale * input size)).  A PIL image keeps
        its kind (RGB, RGBA, L, LA, I;16); an (H, W, 3) uint8/uint16 array gives an RGB image.
        ``output="numpy"`` returns the (H, W, 3) array of the colour samples instead (uint8, or
        uint16 for 16-bit input; alpha is dropped).

        >>> from PIL import Image
        >>> from srcli import SRPipeline
        >>> pipe = SRPipeline.from_pretrained()
        >>> big = pipe.upscale(Image.open("docs/examples/lr_input.png"), scale=4, seed=0)
        >>> big.size
        (256, 256)
        >>> pipe.upscale(Image.open("docs/examples/lr_input.png"), scale=2, output="numpy").shape
        (128, 128, 3)
        """
        check_output_kind(output)
        if isinstance(image, Image.Image):
            data = from_pil(image)
        else:
            try:
                data = ImageData(np.asarray(image))
            except ValueError as exc:
                raise UsageError(f"expected an RGB image (H, W, 3) of uint8 or uint16: {exc}") from None
        out = self.upscale_image(
            data, scale, steps, seed, sampler, temperature, strength, callback, tile, tile_batch, init, consistency
        )
        return out.rgb if output == "numpy" else to_pil(out)[0]

    def describe(self) -> dict[str, Any]:
        return {
            "weights": self.source,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "fixed_scale": self.config.fixed_scale,
            "train_scales": list(self.config.train_scales),
            "channels_last": self.channels_last,
            "timesteps": self.schedule.T,
            "lr_upsample": self.lr_upsample,
            "unet_margin": self.unet_margin,
            "default_consistency": self.default_consistency,
        }


class _ChainedProgress:
    """Joins the ``(done, total)`` reports of successive passes into one count: the steps of
    finished passes stay done and the total grows when a pass starts (its tile count is known only
    then)."""

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


def load_image_rgb(path: str | Path) -> Image.Image:
    """Convenience for notebooks: open a file as an RGB PIL image (EXIF orientation applied)."""
    from .imageio import load_rgb8

    return Image.fromarray(load_rgb8(path))
