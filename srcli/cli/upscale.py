"""``srcli upscale``: super-resolve image files in resumable, shardable batches."""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..fsutil import remove_stale_temps
from ..imageio import FORMATS, INPUT_SUFFIXES, ImageReadError, ImageWriteError, image_size, is_complete_image, output_format, read_image, write_image
from ..ops import scaled_size
from ..pipeline import (
    DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_STRENGTH, SRPipeline, UsageError, check_consistency, check_init, check_sampler, check_scale, check_steps, check_strength,
    check_tile, check_tile_batch, resolve_device, resolve_precision,
)
from .app import app
from .common import (
    EXIT_OK, EXIT_SOME_FAILED, PIXEL_LIMIT_ENV, ConsistencyOpt, DeviceOpt, InitOpt, JsonOpt, ModelOpt, PrecisionOpt, SeedOpt, StrengthOpt, WeightsOpt, apply_pixel_limit,
    emit_json, err_console, error, expand_inputs, plain, note, parse_shard, progress_bar, protect_inputs, reflow, take_shard,
    usage_errors, warn,
)

_DEFAULTS = ", ".join(f"{f:g} at {s:g}x" for s, f in sorted(DEFAULT_STRENGTH["encoder"].items()))
_HELP = f"""Upscale images by --scale with the diffusion model.

INPUT is any mix of image files, directories (the images directly inside; not subfolders) and
quoted glob patterns ('photos/**/*.jpg' walks a tree).  PNG, JPEG, WebP, TIFF, BMP and GIF (first
frame) are read; grayscale stays grayscale, alpha is upscaled with Lanczos, 16-bit grayscale
PNG/TIFF is processed and written at 16 bits, the ICC profile is kept.

Outputs go next to each input as NAME_x4.EXT (NAME_x2.5.EXT at 2.5x; GIF inputs give PNG), into a
directory with -o DIR, or to -o FILE for a single input (the format follows the suffix).  An input
is never overwritten, and an input that is another input's output (an earlier run's result) is left
out.  Outputs are written atomically; an output that already exists complete is skipped, so
rerunning an interrupted batch finishes it (--overwrite redoes everything).  --shard I/N takes every
N-th file of the sorted input list starting at the I-th, for N parallel processes.

--scale takes any factor from 1.5 to 8.  Factors beyond the model's training range (2-4 for the
shipped model) run as a cascade of passes, the largest first: 8x is 4x then 2x, 6x is 3x then 2x;
later passes take half the steps of the one before, and each has its own seed derived from --seed.
--strength F starts the reverse process at F x T from an upsampled image with noise injected to
that level (Diff-SR) instead of from pure noise (F = 1, SRDiff's sampler), in every pass; smaller F
keeps closer to that image, invents less and takes fewer steps.  The image is the model's own
regression output (--init encoder, the default) or the bicubic one (--init bicubic, as Diff-SR).
The default strength depends on the scale of the pass (from the encoder output: {_DEFAULTS}),
fidelity first: the most texture that stays at least 1 dB above bicubic in PSNR on both
held-out crop sets.  Raise it (up to 1) for more invented texture.

Large images run in overlapping tiles (--tile, largest HR tile side in px; default: the largest
that fits a memory budget) blended without seams; the noise is tied to HR pixel positions, so the
tile size does not change the result beyond tiny differences at tile borders.  Inputs above
Pillow's decompression-bomb limit are refused; set {PIXEL_LIMIT_ENV} to change it.

Examples:

  srcli upscale photo.png --scale 4

  srcli upscale photo.jpg --scale 2.5 -o big.png --steps 50 --seed 7

  srcli upscale photos/ --scale 2 -o upscaled/ --json > results.jsonl

  srcli upscale 'scans/**/*.tif' --scale 4 --tile 256 --shard 2/4

  srcli upscale face.png --scale 4 --strength 1      # SRDiff's sampler: more invented texture

  srcli upscale face.png --scale 4 --sampler ddim --steps 10 --strength 0.4 --init bicubic

  srcli upscale thumb.png --scale 8 --seed 3

Exit codes: 0 every input done (or already done), 1 some inputs failed, 2 usage error.
"""
HELP = reflow(_HELP)


def output_name(src: Path, scale: float) -> str:
    """NAME_x4.EXT; the input's suffix when srcli writes that format, else .png."""
    suffix = src.suffix if src.suffix.lower() in FORMATS else ".png"
    return f"{src.stem}_x{scale:g}{suffix}"


def plan_outputs(inputs: list[Path], output: Optional[str], scale: float) -> list[Path]:
    """Where each input goes (raises ``UsageError`` for an impossible -o)."""
    if output is None:
        return [src.with_name(output_name(src, scale)) for src in inputs]
    out = Path(output).expanduser()
    as_dir = out.is_dir() or output.endswith(("/", "\\")) or not out.suffix
    if not as_dir:
        if len(inputs) > 1:
            raise UsageError(f"-o {output}: several inputs need an output directory, not a file name")
        try:
            output_format(out)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return [out]
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {output}: exists and is not a directory")
    return [out / output_name(src, scale) for src in inputs]


_OUTPUT_STEM = re.compile(r"^(?P<stem>.+)_x(?P<scale>\d+(?:\.\d+)?)$")  # NAME_x4, NAME_x2.5 (output_name)


def split_earlier_outputs(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(inputs to process, earlier outputs left out).  An earlier output is an input named like
    another input's default output at some scale (``photo_x2.png`` beside ``photo.png``, also on a
    rerun at another scale) whose size is that scale times the other input's: a user's own file
    that only shares the name is kept (and never overwritten: ``check_overwrites``)."""
    by_name = {(src.parent.resolve(), src.name): src for src in inputs}
    earlier: list[Path] = []
    for src in inputs:
        match = _OUTPUT_STEM.match(src.stem)
        if not match:
            continue
        scale = float(match["scale"])
        sources = [
            other for (folder, name), other in by_name.items()
            if folder == src.parent.resolve() and other is not src and Path(name).stem == match["stem"]
            and output_name(other, scale) == src.name
        ]
        size = image_size(src) if sources else None
        if size is not None and any(
            (source_size := image_size(other)) is not None and scaled_size(source_size, scale) == size for other in sources
        ):
            earlier.append(src)
    left_out = set(earlier)
    return [src for src in inputs if src not in left_out], earlier


def check_overwrites(inputs: list[Path], outputs: list[Path]) -> None:
    """UsageError when an output would replace an input (a user's own NAME_x2.png, say), before any work."""
    taken = {src.resolve(): src for src in inputs}
    for src, dst in zip(inputs, outputs):
        victim = taken.get(dst.resolve())
        if victim is not None:
            raise UsageError(f"{victim}: the output of {src} would overwrite an input; rename it or choose another output (-o DIR)")


def check_collisions(inputs: list[Path], outputs: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        first = seen.setdefault(dst.resolve(), src)
        if first is not src:
            raise UsageError(f"{first} and {src} would both be written to {dst}; use separate runs or the default output")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"out of memory ({text}); try a smaller --tile"
    return text


@app.command("upscale", help=HELP, no_args_is_help=True)
def upscale_command(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...", help="Image files, directories or quoted glob patterns.", show_default=False)
    ],
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor from 1.5 to 8, e.g. 4 or 2.5; beyond the model's range a cascade.", show_default=False)],
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", help="Output file (one input) or directory. Default: next to each input.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Reverse diffusion steps (fewer is faster; at most the model's T).")] = DEFAULT_STEPS,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    tile: Annotated[
        Optional[int], typer.Option("--tile", help="Largest HR tile side in px (0 = no tiling). Default: auto from a memory budget.")
    ] = None,
    tile_batch: Annotated[
        Optional[int], typer.Option("--tile-batch", help="Tiles of one image per network batch. Default: 4 on CUDA, 1 on CPU.")
    ] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="ddpm (ancestral, respaced) or ddim.")] = DEFAULT_SAMPLER,
    strength: StrengthOpt = None,
    init: InitOpt = None,
    consistency: ConsistencyOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Process only shard I of N (1 <= I <= N).")] = None,
    json_output: JsonOpt = False,
) -> None:
    # every argument is checked before any file is read or any model loaded
    with usage_errors():
        scale = check_scale(scale)
        check_steps(steps)
        check_tile(tile)
        check_tile_batch(tile_batch)
        check_sampler(sampler)
        strength = check_strength(strength)
        init = check_init(init)
        check_consistency(consistency)
        resolve_precision(precision, resolve_device(device))
        shard_spec = parse_shard(shard)
        apply_pixel_limit()
        found, unmatched = expand_inputs(inputs, INPUT_SUFFIXES)
        found, earlier = split_earlier_outputs(found)
        outputs = plan_outputs(found, output, scale)
        check_collisions(found, outputs)
        check_overwrites(found, outputs)
    protect_inputs(outputs, found)
    items = take_shard(list(zip(found, outputs)), shard_spec)

    with usage_errors():
        pipe = SRPipeline.from_pretrained(weights, device=device, precision=precision, model=model)
        if steps > pipe.schedule.T:
            warn(f"--steps {steps} is more than the model's T = {pipe.schedule.T} steps; running {pipe.schedule.T}")
            steps = pipe.schedule.T
        stages = pipe.stages(scale, steps, strength, init, consistency)  # a fixed-scale checkpoint refuses other scales here
    note(pipe.plan_note(scale, stages))
    if earlier:
        names = ", ".join(str(p) for p in earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
        note(f"left out {len(earlier)} earlier output(s) found among the inputs: {names}")

    failed = 0
    for spec, reason in unmatched:
        failed += 1
        error(f"{spec}: {reason}")
        if json_output:
            emit_json({"input": spec, "output": None, "status": "error", "error": f"{spec}: {reason}"})

    counts = {"ok": 0, "skipped": 0}
    settings = {
        "scale": scale, "steps": steps, "seed": seed, "sampler": sampler, "strength": strength, "init": init,
        "consistency": stages[0].consistency,
        "stages": [asdict(s) for s in stages],
    }
    with progress_bar() as progress:
        images_task = progress.add_task("images", total=len(items))
        steps_task = progress.add_task("", total=None, visible=False)

        def on_step(done: int, total: int) -> None:
            progress.update(steps_task, completed=done, total=total)

        for src, dst in items:
            progress.reset(steps_task, total=None, description=f"  {plain(src.name)}", visible=True)
            record = _process(pipe, src, dst, settings, tile, tile_batch, overwrite, on_step)
            progress.advance(images_task)
            if record["status"] == "error":
                failed += 1
                error(record["error"])
            else:
                counts[record["status"]] += 1
                for message in record.get("warnings", []):
                    warn(f"{src}: {message}")
            if json_output:
                emit_json(record)
        progress.update(steps_task, visible=False)

    summary = f"{counts['ok']} written, {counts['skipped']} already complete (skipped), {failed} failed"
    err_console.print(summary, highlight=False)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _process(
    pipe: SRPipeline,
    src: Path,
    dst: Path,
    settings: dict[str, Any],
    tile: Optional[int],
    tile_batch: Optional[int],
    overwrite: bool,
    on_step,
) -> dict[str, Any]:
    """Upscale one file; never raises for a bad file (the record says what went wrong)."""
    record: dict[str, Any] = {"input": str(src), "output": str(dst)}
    start = time.perf_counter()
    try:
        remove_stale_temps(dst)  # left by a run killed while writing this output
        image = read_image(src)
        out_size = scaled_size(image.size, settings["scale"])
        if not overwrite and is_complete_image(dst, out_size):
            return {**record, "status": "skipped", "height": out_size[0], "width": out_size[1]}
        result = pipe.upscale_image(
            image, settings["scale"], settings["steps"], settings["seed"], settings["sampler"],
            strength=settings["strength"], init=settings["init"], consistency=settings["consistency"], callback=on_step, tile=tile, tile_batch=tile_batch,
        )
        written = write_image(dst, result)
    except (ImageReadError, ImageWriteError) as exc:
        return {**record, "status": "error", "error": str(exc)}
    except (UsageError, ValueError, RuntimeError, MemoryError, OSError) as exc:
        return {**record, "status": "error", "error": f"{src}: {_reason(exc)}"}
    return {
        **record, **settings, "status": "ok", "height": out_size[0], "width": out_size[1],
        "seconds": round(time.perf_counter() - start, 3),
        "warnings": image.warnings + written,
    }
