"""Evaluation on a folder of HR images with the protocol of docs/protocol.md.

    pipe = SRPipeline.from_pretrained()
    report = evaluate_folder("val/", pipe, scale=4, steps=25, samples=4)
    print(report.mean()["srcli"].psnr_y)

For every HR image: crop it so the scale divides it (``protocol_pair``), make the LR input with the
protocol's degradation (Pillow bicubic on 8-bit RGB), upscale the LR input with srcli (through
``SRPipeline.upscale``, exactly what ``srcli upscale`` does) and with the baselines, and score every
output against the cropped HR image: PSNR and SSIM on Y with a ceil(scale) border, LR-PSNR, and with
several samples the diversity sigma.  Sample k of every image uses seed ``seed + k``, so any output
can be reproduced with ``srcli upscale LR.png --seed SEED+k``.

Scales beyond one pass of the model run as the cascade ``srcli upscale`` runs
(``pipeline.plan_cascade``); ``strength`` None is the per-scale default, as there.

Fractional scales: the LR size is floor(HR size / scale) and the HR image is cropped (top-left) to
round(LR size * scale), which is the output size ``srcli upscale`` gives for that LR size.  For an
integer scale this is the usual crop of the HR image to a multiple of the scale.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data import DEGRADATIONS, textured_crops
from .degrade import make_lr
from .imageio import ImageData, ImageReadError, ImageWriteError, list_images, load_rgb8, write_image
from .cascade import check_scale
from .errors import UsageError
from .metrics import border_for
from .ops import tensor_to_uint8
from .options import SamplingOptions
from .pipeline import SRPipeline
from .report import EvalReport, ImageResult, Scores, pooled_psnr, score, score_samples  # noqa: F401 - the report's API is evaluate's
from .tiling import check_tile

SRCLI = "srcli"
# Pillow filters of the interpolation baselines; "encoder" is the checkpoint's RRDB regression head
# (the paper's "RRDB (L1)" row), which needs a loaded pipeline.
INTERPOLATION_BASELINES = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
BASELINES = (*INTERPOLATION_BASELINES, "encoder")
DEFAULT_BASELINES = ("bicubic", "lanczos")
SSIM_WINDOW = 11


def check_baselines(names: Sequence[str], pipeline_loaded: bool = True) -> tuple[str, ...]:
    """Validate baseline names (order kept, duplicates dropped)."""
    out = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in out if n not in BASELINES]
    if unknown:
        raise UsageError(f"unknown baseline {unknown[0]!r} (choose from {', '.join(BASELINES)})")
    if "encoder" in out and not pipeline_loaded:
        raise UsageError("the encoder baseline needs a loaded checkpoint")
    return out


def protocol_pair(
    hr: np.ndarray, scale: float, degradation: str = "bicubic", degradation_seed: int = 0, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped top-left to round(LR size * scale), LR = the degradation of it).

    The LR size is floor(HR size / scale); for integer scales this crops HR to a multiple of the
    scale.  ``degradation`` "bicubic" is the clean protocol (Pillow bicubic); "real" is the
    real-world model of :mod:`srcli.degrade`, seeded by ``degradation_seed`` and the image's
    ``name``, so every image gets its own degradation and the same one on every run.
    Raises ValueError when the image is too small for the scale and the metrics' border."""
    h, w = hr.shape[:2]
    lr_h, lr_w = math.floor(h / scale + 1e-9), math.floor(w / scale + 1e-9)
    hr_h, hr_w = round(lr_h * scale), round(lr_w * scale)
    if lr_h < 1 or lr_w < 1 or min(hr_h, hr_w) - 2 * border_for(scale) < SSIM_WINDOW:
        raise ValueError(f"{w}x{h} is too small to evaluate at {scale:g}x")
    hr = np.ascontiguousarray(hr[:hr_h, :hr_w])
    rng = np.random.default_rng([degradation_seed, zlib.crc32(name.encode())])
    return hr, make_lr(hr, (lr_w, lr_h), degradation, rng)


def interpolate(lr: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """An interpolation baseline: Pillow resize of the 8-bit LR image to ``size`` = (W, H)."""
    return np.asarray(Image.fromarray(lr).resize(size, INTERPOLATION_BASELINES[method]))


def _encoder_output(pipeline: SRPipeline, lr: np.ndarray, hr_hw: tuple[int, int], options: SamplingOptions) -> np.ndarray:
    """The ``encoder`` baseline: the RRDB's regression output of the input as the model takes it
    (deblocked when ``options`` or the model's default say so, as ``upscale`` does)."""
    x = pipeline.lr_input(lr, options)
    with pipeline.inference():
        return tensor_to_uint8(pipeline.model.rrdb(x, hr_hw))


def comparison_panel(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, crop: int = 128) -> Image.Image:
    """LR (nearest-upscaled), bicubic, srcli and HR side by side, cropped to the most textured
    ``crop`` px square of the HR image and enlarged 2x (nearest) so detail is visible."""
    h, w = hr.shape[:2]
    size = min(crop, h, w)
    y, x = textured_crops(hr, size, 1)[0]
    nearest = np.asarray(Image.fromarray(lr).resize((w, h), Image.NEAREST))
    zoom = 2 if size <= 256 else 1
    labels = ("LR (nearest)", "bicubic", SRCLI, "HR")
    gap, caption = 4, 14
    side = size * zoom
    panel = Image.new("RGB", (4 * side + 3 * gap, side + caption), "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    for i, (label, img) in enumerate(zip(labels, (nearest, bicubic, sr, hr))):
        tile = Image.fromarray(img[y : y + size, x : x + size]).resize((side, side), Image.NEAREST)
        left = i * (side + gap)
        panel.paste(tile, (left, caption))
        draw.text((left + 2, 1), label, fill="black", font=font)
    return panel


def _safe_name(name: str) -> str:
    return Path(name).with_suffix("").as_posix().replace("/", "__")


def output_stems(names: Sequence[str]) -> dict[str, str]:
    """A distinct file stem per image name for the flat ``save_dir``: ``sub/n.png`` is ``sub__n``,
    and a name that flattens (or differs only in letter case, for case-blind file systems) like an
    earlier one gets ``_2``, ``_3``, ... (``sub__n.png`` beside ``sub/n.png``, ``n.jpg`` beside ``n.png``)."""
    taken: set[str] = set()
    stems: dict[str, str] = {}
    for name in names:
        base = stem = _safe_name(name)
        k = 1
        while stem.lower() in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem.lower())
        stems[name] = stem
    return stems


def check_save_dir(hr_dir: str | Path, save_dir: Optional[str | Path]) -> None:
    """UsageError when ``save_dir`` is the HR folder or inside it: its outputs could replace the
    user's images and would be scored as HR images on the next run."""
    if save_dir is None:
        return
    hr, out = Path(hr_dir).resolve(), Path(save_dir).resolve()
    if out == hr or hr in out.parents:
        raise UsageError(
            f"--save-dir {save_dir} is inside the HR folder {hr_dir}: the outputs could overwrite HR images "
            "and would be evaluated as HR images next time; choose a folder outside it"
        )


def evaluate_images(
    images: Sequence[tuple[str, np.ndarray | Callable[[], np.ndarray]]],
    pipeline: Optional[SRPipeline],
    scale: float = 4.0,
    options: Optional[SamplingOptions] = None,
    *,
    samples: int = 1,
    seed: int = 0,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    save_dir: Optional[str | Path] = None,
    tile: Optional[int] = None,
    degradation: str = "bicubic",
    degradation_seed: int = 0,
    on_image: Optional[Callable[[int, int, str], None]] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
    on_output: Optional[Callable[[str, str, np.ndarray, np.ndarray], None]] = None,
    **fields: Any,
) -> EvalReport:
    """Evaluate srcli (when ``pipeline`` is given) and the baselines on (name, HR uint8 array or a
    loader returning one) pairs, srcli sampling with ``options`` (or its fields as keywords; as in
    ``SRPipeline.upscale``); ``tile`` (None: auto, 0: off) is passed on too.
    ``settings["stages"]`` records the passes.
    With ``save_dir``, srcli's first sample and a comparison panel of every image are written there
    as NAME_srcli.png and NAME_compare.png (``output_stems``); when a write fails the saving stops,
    ``report.save_error`` says why, and the evaluation goes on.
    ``on_output(name, method, output, hr)`` sees every output (srcli's first sample) with its HR
    crop, for measures of one's own.
    A loader that raises ImageReadError, or an image too small for the scale, is recorded in
    ``report.failed`` and the others go on.  Bad arguments raise UsageError before any work."""
    scale = check_scale(scale)
    opts = SamplingOptions.of(options, **fields)
    if degradation not in DEGRADATIONS:
        raise UsageError(f"degradation {degradation!r}: expected one of {', '.join(DEGRADATIONS)}")
    if samples < 1:
        raise UsageError(f"samples must be >= 1, got {samples}")
    if pipeline is not None:
        check_tile(tile)
        passes = pipeline.passes(scale, opts)  # a fixed-scale checkpoint refuses other scales here
    baselines = check_baselines(baselines, pipeline is not None)
    if pipeline is None and not baselines:
        raise UsageError("nothing to evaluate: no checkpoint and no baselines")
    out_dir = Path(save_dir) if save_dir is not None else None  # created by the first write
    settings: dict[str, Any] = {
        "scale": scale, "border": border_for(scale), "baselines": list(baselines),
        "degradation": "Pillow bicubic on 8-bit RGB" if degradation == "bicubic" else "real (srcli.degrade)",
        "metrics_channel": "Y (BT.601)",
    }
    if degradation == "real":
        settings["degradation_seed"] = degradation_seed
    grid = degradation == "real"
    if pipeline is not None:
        settings.update(
            steps=opts.steps, sampler=opts.sampler, samples=samples, seed=seed, strength=opts.strength, init=passes[0].init, tile=tile,
            consistency=passes[0].consistency, deblock=pipeline.deblocks(opts), stages=[asdict(p) for p in passes], **pipeline.describe()
        )
    report = EvalReport(settings)
    stems = output_stems([name for name, _ in images])
    for index, (name, source) in enumerate(images):
        if on_image is not None:
            on_image(index, len(images), name)
        try:
            hr_full = source() if callable(source) else source
            hr, lr = protocol_pair(hr_full, scale, degradation, degradation_seed, name)
        except (ImageReadError, ValueError) as exc:
            report.failed.append((name, str(exc)))
            continue
        size = (hr.shape[1], hr.shape[0])
        result = ImageResult(name, size, (lr.shape[1], lr.shape[0]))
        outputs: dict[str, np.ndarray] = {}
        for method in baselines:
            start = time.perf_counter()
            if method == "encoder":
                out = _encoder_output(pipeline, lr, (size[1], size[0]), opts)
            else:
                out = interpolate(lr, size, method)
            result.scores[method] = score(out, hr, lr, scale, time.perf_counter() - start, grid)
            outputs[method] = out
            if on_output is not None:
                on_output(name, method, out, hr)
        if pipeline is not None:
            srs, start = [], time.perf_counter()
            for k in range(samples):
                sr = pipeline.upscale(lr, scale, opts, seed=seed + k, tile=tile, callback=on_step)
                srs.append(np.asarray(sr))
            if srs[0].shape != hr.shape:  # a broken invariant of protocol_pair / scaled_size, not user error
                raise RuntimeError(f"{name}: srcli output {srs[0].shape} does not match the HR crop {hr.shape}")
            result.scores[SRCLI] = score_samples(srs, hr, lr, scale, (time.perf_counter() - start) / samples, grid)
            if on_output is not None:
                on_output(name, SRCLI, srs[0], hr)
            if out_dir is not None and report.save_error is None:
                bicubic = outputs.get("bicubic")
                if bicubic is None:
                    bicubic = interpolate(lr, size, "bicubic")
                panel = np.asarray(comparison_panel(lr, bicubic, srs[0], hr))
                try:  # atomic writes; a failure (full disk) stops the saving, never the scoring
                    write_image(out_dir / f"{stems[name]}_{SRCLI}.png", ImageData(srs[0]))
                    write_image(out_dir / f"{stems[name]}_compare.png", ImageData(panel))
                except ImageWriteError as exc:
                    report.save_error = str(exc)
        report.images.append(result)
    return report


def _load(path: Path) -> np.ndarray:
    try:
        return load_rgb8(path)
    except ImageReadError as exc:  # the report names the image already
        raise ImageReadError(str(exc).replace(f"{path}: ", "", 1)) from None


def evaluate_folder(
    hr_dir: str | Path,
    pipeline: Optional[SRPipeline],
    limit: Optional[int] = None,
    **kwargs: Any,
) -> EvalReport:
    """``evaluate_images`` on the images in (and below) ``hr_dir``, sorted by path; ``limit`` takes
    the first N.  Images are read one at a time."""
    folder = Path(hr_dir)
    if not folder.is_dir():
        raise UsageError(f"{hr_dir}: not a folder")
    check_save_dir(folder, kwargs.get("save_dir"))
    paths = list_images(folder)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"limit must be >= 1, got {limit}")
        paths = paths[:limit]
    if not paths:
        raise UsageError(f"{hr_dir}: no images found")
    images = [(p.relative_to(folder).as_posix(), lambda p=p: _load(p)) for p in paths]
    report = evaluate_images(images, pipeline, **kwargs)
    report.settings["hr_dir"] = str(folder)
    return report


__all__ = [
    "SRCLI", "BASELINES", "DEFAULT_BASELINES", "Scores", "ImageResult", "EvalReport", "check_baselines",
    "protocol_pair", "interpolate", "output_stems", "check_save_dir", "score", "score_samples", "comparison_panel", "evaluate_images",
    "evaluate_folder",
]
