"""Exploring the many HR images that fit one LR image: the Python API of ``sample-diverse``,
``interpolate`` and ``fuse``.  One function per algorithm, each taking an ``SRPipeline`` first:

    pipe = SRPipeline.from_pretrained()
    res = sample_diverse(pipe, Image.open("in.png"), n=8, scale=4)     # res.samples, res.mean_sigma
    mix = latent_interpolation(pipe, lr, t=50, lambdas=[0, 0.4, 0.8, 1], seeds=(1, 2))   # Alg. 4
    fus = content_fusion(pipe, eyes_hr, face_hr, t=[30, 50, 70])       # Alg. 3, box = eye band

All three run the engine's start-from-t primitive ``diffusion.reverse_process`` (through
``diffusion.content_fusion`` / ``diffusion.latent_interpolation``) and take their randomness from
the pipeline's noise (``SRPipeline.noise``, position-keyed), so a seed means the same thing here as
in ``srcli upscale``.

``steps`` counts reverse steps of a full T-step run, as everywhere in srcli: a run that starts at t
takes round(steps * t / T) of them (the engine's rule for ``strength``); ``steps=None`` runs every
step, the papers' loop; more steps than T run T.  A ``scale`` of None is ``default_scale(pipe)``.
Images go in as PIL images or (H, W, 3) uint8 arrays and come out as Pillow RGB images, or as
(H, W, 3) uint8 arrays with ``output="numpy"`` (as ``SRPipeline.upscale``).  The rendering helpers
at the end (contact sheet, heatmap, strips) take either kind and return arrays: what the CLI writes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import diffusion
from .metrics import degrade, diversity_sigma, sigma_map
from .ops import resize, scaled_size, tensor_to_uint8
from .pipeline import (
    DEFAULT_SAMPLER, DEFAULT_STEPS, SRPipeline, UsageError, cascade_sizes, check_output_kind, check_sampler, check_scale, check_seed,
    check_steps, check_temperature,
)

ImageLike = Image.Image | np.ndarray
ImageOut = Image.Image | np.ndarray  # Pillow by default, an array with output="numpy"
Box = tuple[int, int, int, int]
# callback(stage, done, total): progress of the reverse steps of one stage ("samples", "t=50", ...)
StageCallback = Optional[Callable[[str, int, int], None]]

# The eye band of an aligned square face crop (CelebA/FFHQ-style alignment), as fractions of the
# width and height: x 0.15-0.85, y 0.30-0.50.
DEFAULT_EYE_BOX = (0.15, 0.30, 0.85, 0.50)
DEFAULT_LAMBDAS = (0.0, 0.4, 0.8, 1.0)  # the paper's Fig. 6(b)
# sample_diverse's strength: the whole reverse process, SRDiff's diverse sampling (upscale's
# per-scale default starts nearer the regression output and the samples barely differ at 2x)
DIVERSE_STRENGTH = 1.0


# ----------------------------------------------------------------------------------------------
# shared helpers


def _rgb8(image: ImageLike, what: str = "image") -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"{what}: expected an RGB image (H, W, 3) of uint8")
    return image


def check_t(pipe: SRPipeline, t: int) -> int:
    """A diffusion step t in [0, T] of the loaded schedule (t = 0 means no noise at all)."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t <= pipe.schedule.T:
        raise UsageError(f"t must be an integer in [0, {pipe.schedule.T}] (the model's T), got {t}")
    return int(t)


def check_lambdas(lambdas: Sequence[float]) -> list[float]:
    values = [float(v) for v in lambdas]
    if not values:
        raise UsageError("give at least one lambda")
    bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise UsageError(f"lambdas must lie in [0, 1], got {bad[0]:g}")
    return values


def _steps_from(pipe: SRPipeline, t: int, steps: Optional[int]) -> Optional[int]:
    """Reverse steps for a start at t: the share t/T of a full run's ``steps`` (None: every step)."""
    return None if steps is None else max(1, round(steps * t / pipe.schedule.T))


def _check_run(steps: Optional[int], sampler: str) -> Optional[int]:
    check_sampler(sampler)
    return check_steps(steps)


def default_scale(pipe: SRPipeline) -> float:
    """The scale used when none is given: a fixed-scale checkpoint's own (8 for the authors' faces
    model), else the top of the training range (4 for the shipped model)."""
    fixed = pipe.config.fixed_scale
    return float(fixed if fixed is not None else pipe.config.train_scales[1])


def _check_sizes(pipe: SRPipeline, lr_hw: tuple[int, int], hr_hw: tuple[int, int]) -> None:
    """A checkpoint with a fixed-scale projection maps only one size ratio; say so as a usage error."""
    try:
        pipe.model.check_scale(lr_hw, hr_hw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def _inference(pipe: SRPipeline) -> Iterator[None]:
    # the pipeline's own context (no autograd)
    with pipe.inference():
        yield


def _stage(callback: StageCallback, name: str) -> Optional[Callable[[int, int], None]]:
    return None if callback is None else (lambda done, total: callback(name, done, total))


def _to_uint8_list(x: torch.Tensor) -> list[np.ndarray]:
    return [tensor_to_uint8(x[i]) for i in range(x.shape[0])]


def _deliver(output: str) -> Callable[[np.ndarray], ImageOut]:
    """How a function hands its uint8 images back: Pillow images ("pil") or the arrays ("numpy")."""
    return Image.fromarray if output == "pil" else (lambda a: a)


def steps_run(pipe: SRPipeline, t: int, steps: Optional[int]) -> int:
    """The reverse steps a decode from step t actually runs (what ``--json`` records report)."""
    return len(diffusion.timestep_grid(t, _steps_from(pipe, t, steps) or t))


# ----------------------------------------------------------------------------------------------
# diverse samples


@dataclass
class DiverseSamples:
    """N SR samples of one LR input and how much they disagree (docs/protocol.md, "Metrics": sigma)."""

    lr: ImageOut  # the input (h, w)
    bicubic: ImageOut  # up(x_L), the starting point of the residual (H, W)
    samples: list[ImageOut]  # one per seed (H, W)
    seeds: list[int]
    sigma_map: np.ndarray  # per-pixel std across samples, mean over RGB, 0-255 (H, W)
    mean_sigma: float  # the paper's diversity number


def sample_diverse(
    pipe: SRPipeline,
    image: ImageLike,
    n: int = 8,
    scale: Optional[float] = None,
    steps: Optional[int] = DEFAULT_STEPS,
    seed: int = 0,
    sampler: str = DEFAULT_SAMPLER,
    temperature: float = 1.0,
    callback: StageCallback = None,
    strength: Optional[float] = DIVERSE_STRENGTH,
    init: Optional[str] = None,
    consistency: Optional[int] = None,
    output: str = "pil",
) -> DiverseSamples:
    """``n`` samples of one LR image, seeds seed..seed+n-1, in one batch through the network.

    The LR encoder runs once; its condition is repeated along the batch.  Each sample takes its
    noise from its own seed's noise field, so sample i equals the untiled
    ``pipe.upscale(image, seed=seed + i, tile=0)`` (same scale, steps, sampler, strength and init)
    whatever n is; scales beyond the model's range run the same cascade (``SRPipeline.sr_cascade``).
    The strength defaults to 1, SRDiff's diverse sampling from pure noise, because the point is the
    range of plausible detail; None takes upscale's per-scale default, which invents less and so
    varies less.  ``consistency``: back-projection iterations (None: the model's default).
    ``output``: "pil" (Pillow images) or "numpy" (uint8 arrays).  Untiled: the batch of n HR images must fit in memory.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"n must be a positive integer, got {n}")
    check_sampler(sampler)
    check_temperature(temperature)
    check_seed(seed)
    check_seed(seed + n - 1, "the last sample's seed")
    deliver = _deliver(check_output_kind(output))
    scale = default_scale(pipe) if scale is None else scale
    stages = pipe.stages(scale, steps, strength, init, consistency)
    lr = _rgb8(image)
    sizes = cascade_sizes(lr.shape[:2], scale, [s.scale for s in stages])
    x_lr = pipe.to_input(lr)
    seeds = [seed + i for i in range(n)]
    sr = pipe.sr_cascade(x_lr, stages, sizes, seeds, sampler, temperature, callback=_stage(callback, "samples"))
    samples = _to_uint8_list(sr)
    return DiverseSamples(
        lr=deliver(lr),
        bicubic=deliver(tensor_to_uint8(resize(x_lr.float(), sizes[-1]))),
        samples=[deliver(s) for s in samples],
        seeds=seeds,
        sigma_map=sigma_map(samples),
        mean_sigma=diversity_sigma(samples),
    )


# ----------------------------------------------------------------------------------------------
# Algorithm 4: latent interpolation


@dataclass
class Interpolation:
    """Alg. 4 results: one SR image per lambda (lambda 1 = endpoint A, lambda 0 = endpoint B)."""

    t: int
    lambdas: list[float]
    images: list[ImageOut]  # decoded mixes, in the order of ``lambdas``
    endpoints: tuple[ImageOut, ImageOut]  # the two SR predictions A and B
    seeds: Optional[tuple[int, int]]  # the seeds of A and B (None when given as images)
    latents: torch.Tensor = field(repr=False)  # (2, 3, H, W): A and B diffused to t (residual space)


def latent_interpolation(
    pipe: SRPipeline,
    image: ImageLike,
    t: int = 50,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    seeds: Optional[tuple[int, int]] = None,
    pair: Optional[tuple[ImageLike, ImageLike]] = None,
    scale: Optional[float] = None,
    steps: Optional[int] = DEFAULT_STEPS,
    seed: int = 0,
    sampler: str = DEFAULT_SAMPLER,
    temperature: float = 1.0,
    callback: StageCallback = None,
    consistency: Optional[int] = None,
    output: str = "pil",
) -> Interpolation:
    """Algorithm 4 (see ``diffusion.latent_interpolation`` for how its t differs from the authors'
    code by one step): two SR predictions of the LR ``image`` (A, B),
    both diffused to ``t`` with independent noise, mixed lam * x_A + (1 - lam) * x_B for every lambda
    and decoded from t conditioned on the LR image.  All mixes share the reverse-step noise, so
    they differ only by their latent.

    The predictions come from ``seeds`` (A, B), sampled in one batch (default seed+1, seed+2), or
    are given as ``pair`` (two SR images of one size; then ``scale`` follows from the sizes).
    ``seed`` drives the algorithm's own noise: the two forward draws and the reverse steps.
    ``consistency`` applies to the sampled predictions as in ``upscale`` (None: the model's
    default); the decoded mixes are the algorithm's own output, not back-projected.
    ``output``: "pil" (Pillow images) or "numpy" (uint8 arrays).
    """
    t = check_t(pipe, t)
    lambdas = check_lambdas(lambdas)
    steps = _check_run(steps, sampler)
    check_temperature(temperature)
    check_seed(seed)
    deliver = _deliver(check_output_kind(output))
    if seeds is not None and pair is not None:
        raise UsageError("give either seeds or a pair of SR images, not both")
    lr = _rgb8(image)
    x_lr = pipe.to_input(lr)
    if pair is not None:
        a, b = _rgb8(pair[0], "first SR image"), _rgb8(pair[1], "second SR image")
        if a.shape != b.shape:
            raise UsageError(f"the two SR images differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
        out_size = a.shape[:2]
        check_scale(out_size[1] / lr.shape[1])
        if abs(out_size[0] - lr.shape[0] * out_size[1] / lr.shape[1]) > 1:
            raise UsageError(
                f"the SR images ({a.shape[1]}x{a.shape[0]}) are not an upscale of the "
                f"{lr.shape[1]}x{lr.shape[0]} input (different aspect ratio)"
            )
    else:
        if seeds is None:
            seeds = (seed + 1, seed + 2)
        elif len(seeds) != 2:
            raise UsageError(f"seeds must be two integers (A, B), got {tuple(seeds)}")
        seeds = (check_seed(seeds[0], "seed A"), check_seed(seeds[1], "seed B"))
        out_size = scaled_size(lr.shape[:2], check_scale(default_scale(pipe) if scale is None else scale))
    _check_sizes(pipe, lr.shape[:2], out_size)
    cond = pipe.condition(x_lr, out_size)

    if pair is not None:
        endpoints = (a, b)
        with _inference(pipe):
            residuals = torch.cat([cond.to_residual(pipe.to_input(a)), cond.to_residual(pipe.to_input(b))])
    else:
        both = cond.expand(2)
        sr = pipe.sr_tensor(
            x_lr.expand(2, -1, -1, -1), out_size, list(seeds), steps, sampler, temperature=temperature,
            callback=_stage(callback, "predictions"), cond=both, consistency=consistency,
        )
        endpoints = tuple(_to_uint8_list(sr))
        with _inference(pipe):
            residuals = both.to_residual(sr)

    mixes = cond.expand(len(lambdas))
    with _inference(pipe):
        decoded, latents = diffusion.latent_interpolation(
            mixes.eps_fn(), pipe.schedule, residuals[:1], residuals[1:], t, lambdas,
            pipe.noise([seed]), steps=_steps_from(pipe, t, steps), sampler=sampler,
            temperature=temperature, callback=_stage(callback, f"t={t}"),
        )
        images = _to_uint8_list(mixes.to_image(decoded))
    return Interpolation(
        t, lambdas, [deliver(i) for i in images], (deliver(endpoints[0]), deliver(endpoints[1])), seeds if pair is None else None,
        latents.float().cpu(),
    )


# ----------------------------------------------------------------------------------------------
# Algorithm 3: content fusion


@dataclass
class Fusion:
    """Alg. 3 results: one fused image per t; outside ``box`` every pixel is the face source's."""

    ts: list[int]
    box: Box
    images: list[ImageOut]  # x_fused per t
    pasted: ImageOut  # x_f: the box of the eye source pasted into the face source
    lr: ImageOut  # x_L: the face source downsampled (the condition)


def resolve_box(box: Optional[Sequence[float]], width: int, height: int) -> Box:
    """Pixel box (x0, y0, x1, y1), end-exclusive, inside a width x height image.  ``None`` is the
    default eye band ``DEFAULT_EYE_BOX`` (x 15-85 % of the width, y 30-50 % of the height)."""
    if box is None:
        fx0, fy0, fx1, fy1 = DEFAULT_EYE_BOX
        box = (round(fx0 * width), round(fy0 * height), round(fx1 * width), round(fy1 * height))
    if len(box) != 4 or any(float(v) != int(v) for v in box):
        raise UsageError(f"box must be four integers x0,y0,x1,y1, got {tuple(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise UsageError(
            f"box {x0},{y0},{x1},{y1} is not a non-empty region inside the {width}x{height} image "
            "(need 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height)"
        )
    return x0, y0, x1, y1


def paste(base: np.ndarray, source: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``base`` with the ``box`` region taken from ``source`` (same size)."""
    x0, y0, x1, y1 = box
    out = base.copy()
    out[y0:y1, x0:x1] = source[y0:y1, x0:x1]
    return out


def content_fusion(
    pipe: SRPipeline,
    eyes_hr: ImageLike,
    face_hr: ImageLike,
    t: int | Sequence[int] = 50,
    box: Optional[Sequence[int]] = None,
    scale: Optional[float] = None,
    steps: Optional[int] = DEFAULT_STEPS,
    seed: int = 0,
    sampler: str = DEFAULT_SAMPLER,
    temperature: float = 1.0,
    callback: StageCallback = None,
    output: str = "pil",
) -> Fusion:
    """Algorithm 3: fuse the ``box`` region of ``eyes_hr`` into ``face_hr`` (HR images of one size).

    x_f = face with the box pasted from the eye source; x_L = the face source downsampled by
    ``scale`` (the paper: 8 for faces) with the protocol's degradation (Pillow bicubic); x_r = x_f - up(x_L) in residual
    space, diffused to t with one draw of noise (seed ``seed``, the same draw for every t), decoded
    from t conditioned on D(x_L), plus up(x_L); then only the box of that result goes back into the
    face source.  Small t keeps the eye source, large t moves toward the face source (the paper
    shows t = 30, 50, 70).  ``t`` may be a list: one fused image per t.  ``box`` is in pixels,
    default the eye band of an aligned face crop: x 0.15-0.85 of the width, y 0.30-0.50 of the height.
    ``output``: "pil" (Pillow images) or "numpy" (uint8 arrays).
    """
    ts = [check_t(pipe, v) for v in ([t] if isinstance(t, (int, np.integer)) else t)]
    if not ts:
        raise UsageError("give at least one t")
    steps = _check_run(steps, sampler)
    check_temperature(temperature)
    check_seed(seed)
    deliver = _deliver(check_output_kind(output))
    eyes, face = _rgb8(eyes_hr, "eye source"), _rgb8(face_hr, "face source")
    if eyes.shape != face.shape:
        raise UsageError(
            f"the two images must have one size: eye source {eyes.shape[1]}x{eyes.shape[0]}, "
            f"face source {face.shape[1]}x{face.shape[0]}"
        )
    height, width = face.shape[:2]
    box = resolve_box(box, width, height)
    scale = check_scale(default_scale(pipe) if scale is None else scale)
    lr_w, lr_h = round(width / scale), round(height / scale)
    if min(lr_w, lr_h) < 1:
        raise UsageError(f"a {width}x{height} image is too small to downsample by {scale:g}")
    _check_sizes(pipe, (lr_h, lr_w), (height, width))

    pasted = paste(face, eyes, box)
    lr = degrade(face, (lr_w, lr_h))
    cond = pipe.condition(pipe.to_input(lr), (height, width))
    images = []
    with _inference(pipe):
        x_up = cond.x_up.float()
        # Not clipped (unlike training targets): t = 0 then returns the paste exactly, and for t >= 1
        # the reverse process clips x0_hat at every step, so its output stays in the model's range.
        residual = (pipe.to_input(pasted).float() - x_up) * cond.rescale
        for tv in ts:
            x0 = diffusion.content_fusion(
                cond.eps_fn(), pipe.schedule, residual, tv, pipe.noise([seed]),
                steps=_steps_from(pipe, tv, steps), sampler=sampler, temperature=temperature,
                callback=_stage(callback, f"t={tv}"),
            )
            fused_sr = (x0.float() / cond.rescale + x_up).clamp(-1, 1)
            images.append(paste(face, tensor_to_uint8(fused_sr), box))
    return Fusion(ts, box, [deliver(i) for i in images], deliver(pasted), deliver(lr))


# ----------------------------------------------------------------------------------------------
# rendering: contact sheets, strips and the sigma heatmap

_CAPTION = 16  # caption band height in pixels
_GAP = 4
# anchors of a dark-to-bright perceptual ramp (black, purple, red, orange, pale yellow)
_RAMP = np.array(
    [[0, 0, 4], [60, 15, 110], [150, 40, 120], [225, 85, 70], [250, 165, 30], [252, 253, 190]], dtype=np.float64
)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def colorize(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] to RGB uint8 along the heatmap ramp (values above vmax saturate)."""
    x = np.clip(values / vmax if vmax > 0 else np.zeros_like(values), 0, 1) * (len(_RAMP) - 1)
    anchors = np.arange(len(_RAMP))
    rgb = [np.interp(x, anchors, _RAMP[:, c]) for c in range(3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def heatmap(sigma: np.ndarray, mean_sigma: Optional[float] = None) -> np.ndarray:
    """The per-pixel standard deviation map as a colour image with a colour bar and its scale.

    The scale runs from 0 to the 99th percentile of the map (brighter = the samples disagree more,
    i.e. the model invents detail there); values above it saturate.
    """
    vmax = float(np.percentile(sigma, 99)) if sigma.size else 0.0
    vmax = vmax if vmax > 0 else 1.0
    img = colorize(sigma, vmax)
    h, w = sigma.shape
    font = _font(12)
    width = max(w, 260)
    bar_h, legend_h = 12, 44
    canvas = Image.new("RGB", (width, h + legend_h), "white")
    canvas.paste(Image.fromarray(img), ((width - w) // 2, 0))
    bar_w = width - 20
    ramp = colorize(np.tile(np.linspace(0, vmax, bar_w), (bar_h, 1)), vmax)
    canvas.paste(Image.fromarray(ramp), (10, h + 4))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, h + 4 + bar_h + 1), "0", fill="black", font=font)
    top = f">={vmax:.1f}"
    draw.text((10 + bar_w - draw.textlength(top, font=font), h + 4 + bar_h + 1), top, fill="black", font=font)
    title = "std dev per pixel (0-255)" + ("" if mean_sigma is None else f", mean {mean_sigma:.2f}")
    draw.text(((width - draw.textlength(title, font=font)) / 2, h + 4 + bar_h + 14), title, fill="black", font=font)
    return np.asarray(canvas)


def labelled_grid(tiles: Sequence[tuple[str, np.ndarray]], columns: int, max_tile: int = 384) -> np.ndarray:
    """Tiles of one size in a grid, each with a caption below; tiles larger than ``max_tile`` (long
    side) are shrunk for the sheet.  Smaller tiles (an LR input) are enlarged with nearest neighbour
    so their pixels stay visible."""
    if not tiles:
        raise ValueError("no tiles")
    tiles = [(label, np.asarray(tile)) for label, tile in tiles]
    th, tw = max(t.shape[0] for _, t in tiles), max(t.shape[1] for _, t in tiles)
    shrink = min(1.0, max_tile / max(th, tw))
    th, tw = max(1, round(th * shrink)), max(1, round(tw * shrink))
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    font = _font(12)
    cell_w = max(tw, 64)
    sheet = Image.new("RGB", (columns * (cell_w + _GAP) + _GAP, rows * (th + _CAPTION + _GAP) + _GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(tiles):
        im = Image.fromarray(tile)
        if im.size != (tw, th):
            enlarge = im.width < tw and im.height < th
            im = im.resize((tw, th), Image.NEAREST if enlarge else Image.BICUBIC)
        x = _GAP + (i % columns) * (cell_w + _GAP) + (cell_w - tw) // 2
        y = _GAP + (i // columns) * (th + _CAPTION + _GAP)
        sheet.paste(im, (x, y))
        while label and draw.textlength(label, font=font) > cell_w:
            label = label[:-1]
        draw.text((x + (tw - draw.textlength(label, font=font)) / 2, y + th + 2), label, fill="black", font=font)
    return np.asarray(sheet)


def contact_sheet(result: DiverseSamples, columns: int = 5) -> np.ndarray:
    """LR input, bicubic and every sample, labelled, with the mean sigma in the bicubic caption."""
    lr = np.asarray(result.lr)
    tiles = [(f"LR input {lr.shape[1]}x{lr.shape[0]}", lr), ("bicubic", result.bicubic)]
    tiles += [(f"seed {s}", img) for s, img in zip(result.seeds, result.samples)]
    return labelled_grid(tiles, columns)


def interpolation_strip(result: Interpolation) -> np.ndarray:
    """One row: prediction B (lambda 0 end), the decoded mixes in order, prediction A (lambda 1 end)."""
    a_name, b_name = ("A", "B") if result.seeds is None else (f"A: seed {result.seeds[0]}", f"B: seed {result.seeds[1]}")
    tiles = [(b_name, result.endpoints[1])]
    tiles += [(f"lam={lam:g} t={result.t}", img) for lam, img in zip(result.lambdas, result.images)]
    tiles.append((a_name, result.endpoints[0]))
    return labelled_grid(tiles, len(tiles))


def _outline(image: np.ndarray, box: Box) -> np.ndarray:
    im = Image.fromarray(image)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(im).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 255, 0), width=max(1, min(im.size) // 128))
    return np.asarray(im)


def fusion_strip(result: Fusion, eyes_hr: ImageLike, face_hr: ImageLike) -> np.ndarray:
    """One row as in the paper's Fig. 6(a): eye source and face source (box outlined), the plain
    paste x_f, then the fused image for every t."""
    tiles = [
        ("eye source", _outline(_rgb8(eyes_hr), result.box)),
        ("face source", _outline(_rgb8(face_hr), result.box)),
        ("paste (t=0)", result.pasted),
    ]
    tiles += [(f"t={t}", img) for t, img in zip(result.ts, result.images)]
    return labelled_grid(tiles, len(tiles))


__all__ = [
    "DEFAULT_EYE_BOX", "DEFAULT_LAMBDAS", "DiverseSamples", "Interpolation", "Fusion", "sample_diverse",
    "latent_interpolation", "content_fusion", "steps_run", "check_t", "check_lambdas", "resolve_box", "paste", "colorize",
    "heatmap", "labelled_grid", "contact_sheet", "interpolation_strip", "fusion_strip",
]
