"""``srcli upscale``: super-resolve image files in resumable, shardable batches."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..fsutil import remove_stale_temps
from ..cascade import DEFAULT_STRENGTH, image_seed
from ..errors import UsageError
from ..imageio import INPUT_SUFFIXES, QUALITY, ImageReadError, ImageWriteError, is_complete_image, output_format, read_image, read_note, write_image
from ..ops import scaled_size
from ..options import SamplingOptions
from ..pipeline import SRPipeline
from ..provenance import file_digest, fingerprint, make_note, note_fingerprint
from ..tiling import check_tile, check_tile_batch
from .app import app
from .common import (
    EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, Interrupted, LogProgress, emit_json, err_console, error, note, plain, progress_bar,
    protect_inputs, reflow, run_settings, usage_errors, warn,
)
from ..regions import env_canvas_budget
from .inputs import PIXEL_LIMIT_ENV, apply_pixel_limit, expand_inputs, parse_shard, take_shard
from .options import JsonOpt, ModelSource, SeedOpt, clamp_steps, model_options, sampling_options
from .outputs import _LOSSY, Target, check_collisions, check_format, check_overwrites, check_quality, plan_outputs, split_earlier_outputs

_DEFAULTS = ", ".join(f"{f:g} at {s:g}x" for s, f in sorted(DEFAULT_STRENGTH["encoder"].items()))
_HELP = f"""Upscale images with the diffusion model: by --scale (default 4), or to a --width or --height.

INPUT is any mix of image files, directories (the images directly inside; not subfolders) and
quoted glob patterns ('photos/**/*.jpg' walks a tree).  PNG, JPEG, WebP, AVIF, TIFF, BMP, GIF
(first frame), JPEG 2000, PNM, TGA, QOI, PSD, ICO, PCX and SGI are read, named or in a folder;
grayscale stays grayscale, alpha is upscaled with Lanczos, 16-bit grayscale PNG/TIFF is processed
and written at 16 bits, the ICC profile and a PNG's gamma are kept.

Outputs go next to each input as NAME_x4.EXT (NAME_x2.5.EXT at 2.5x, NAME_w1920.EXT with --width
1920), into a directory with -o DIR, or to -o FILE for a single input.  EXT is the input's (PNG for
a format srcli does not write, e.g. GIF or AVIF), -o FILE's suffix, or --format png|jpg|webp|tiff;
--quality sets JPEG/WebP quality.  An input is never overwritten, and an input that is another
input's output (an earlier run's result) is left out.  Outputs are written atomically, each with a fingerprint of
its input file, the model and every setting that changes the pixels in its metadata: a rerun skips
the outputs made from the same input with the same model and settings (so rerunning an interrupted
batch finishes it) and redoes the others (the summary counts them; --overwrite redoes everything).
--shard I/N takes every N-th file of the sorted input list starting at the I-th, for N parallel
processes.  Without a terminal on stderr, progress is one line per image (and one a minute on long
images).  Ctrl-C stops with exit code 130 and says how far the batch got.

--scale takes any factor from 1.5 to 8; --width W (or --height H) gives every output that width
(height) and the other side the input's aspect ratio (each image's factor must lie in 1.5-8).
Factors beyond the model's training range (2-4 for the shipped model; up to 0.01% beyond its top
still counts as inside, so 4.0004x is one pass) run as a cascade of passes, the largest first: 8x
is 4x then 2x, 6x is 3x then 2x, a note says so; later passes take half the steps of the one
before, and each has its own seed derived from the image's.  --strength F starts the reverse
process at F x T from an upsampled image with noise injected to that level (Diff-SR) instead of
from pure noise (F = 1, SRDiff's sampler), in every pass; smaller F keeps closer to that image,
invents less and takes fewer steps.  The image is the model's own regression output (--init
encoder, the default) or the bicubic one (--init bicubic, as Diff-SR).  The default strength
depends on the scale of the pass (from the encoder output: {_DEFAULTS}), fidelity first: the most
texture that stays at least 1 dB above bicubic in PSNR on both held-out crop sets.  Raise it (up
to 1) for more invented texture.

Seeds: each image's noise comes from --seed mixed with its path relative to the argument it was
found through (its file name for a file argument), so the images of a batch get unrelated grain,
and a rerun or another shard gives an image the same result.  --same-noise uses --seed as it is
for every image.

Large images run in overlapping tiles (--tile, largest HR tile side in px; default: the largest
that fits a memory budget): the whole image is sampled as one, and at every step the network runs
tile by tile and the tiles' predictions are blended where they overlap, so there are no seams and
the tile size changes the result only by tiny differences near tile borders.  The network's memory
is that of one batch of tiles; the image itself costs about 450 bytes per output pixel, so an
output whose canvas would exceed a memory budget (half the available RAM, at most 4 GiB, on the CPU;
set SRCLI_CANVAS_MB to change it) is sampled in a few large overlapping regions, each on its own
canvas, cross-faded at the end (tiny differences near the region borders).  Inputs above
Pillow's decompression-bomb limit are refused; set {PIXEL_LIMIT_ENV} to change it.

Examples:

  srcli upscale photo.png --scale 4                  # -> photo_x4.png

  srcli upscale photo.jpg --scale 2.5 -o big.png --steps 50 --seed 7

  srcli upscale photos/ --width 1920 --format webp --quality 90 -o upscaled/

  srcli upscale photos/ --scale 2 -o upscaled/ --json > results.jsonl

  srcli upscale 'scans/**/*.tif' --tile 256 --threads 2 --shard 2/4

  srcli upscale face.png --strength 1                # SRDiff's sampler: more invented texture

  srcli upscale face.png --sampler ddim --steps 10 --strength 0.4 --init bicubic

  srcli upscale thumb.png --scale 8 --seed 3

Exit codes: 0 every input done (or already done), 1 some inputs failed, 2 usage error, 130 Ctrl-C.
"""
HELP = reflow(_HELP)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return f"out of memory ({text}); try a smaller --tile"
    return text


@dataclass
class Job:
    """What stays the same for every image of one run."""

    pipe: SRPipeline
    model_digest: str
    target: Target
    options: SamplingOptions
    seed: int
    same_noise: bool
    tile: Optional[int]
    tile_batch: Optional[int]
    quality: int
    overwrite: bool


@app.command("upscale", help=HELP, no_args_is_help=True)
@sampling_options()
@model_options
def upscale_command(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...", help="Image files, directories or quoted glob patterns.", show_default=False)
    ],
    scale: Annotated[
        Optional[float],
        typer.Option("--scale", "-s", help="Upscaling factor from 1.5 to 8, e.g. 4 or 2.5; beyond the model's range a cascade. Default: 4.", show_default=False),
    ] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Output width in px instead of --scale (the height follows the aspect ratio).", show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Output height in px instead of --scale (the width follows the aspect ratio).", show_default=False)] = None,
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", help="Output file (one input) or directory. Default: next to each input.")
    ] = None,
    fmt: Annotated[
        Optional[str], typer.Option("--format", "-f", help="Output format: png, jpg, webp or tiff. Default: the input's (PNG for GIF, AVIF and other formats srcli reads only) or -o's suffix.", show_default=False)
    ] = None,
    quality: Annotated[int, typer.Option("--quality", "-q", help="JPEG/WebP quality from 1 to 100.")] = QUALITY,
    options: SamplingOptions = SamplingOptions(),
    seed: SeedOpt = 0,
    same_noise: Annotated[
        bool, typer.Option("--same-noise", help="Use --seed as it is for every image (one noise field for the whole batch) instead of mixing in each image's name.")
    ] = False,
    source: ModelSource = ModelSource(),
    tile: Annotated[
        Optional[int], typer.Option("--tile", help="Largest HR tile side in px (0 = no tiling). Default: auto from a memory budget.")
    ] = None,
    tile_batch: Annotated[
        Optional[int], typer.Option("--tile-batch", help="Tiles of one image per network batch. Default: 4 on CUDA, 1 on CPU.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo every output, even one made with the same input and settings.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Process only shard I of N (1 <= I <= N).")] = None,
    json_output: JsonOpt = False,
) -> None:
    # every argument is checked before any file is read or any model loaded
    with usage_errors():
        target = Target.from_options(scale, width, height)
        suffix = check_format(fmt)
        check_quality(quality)
        check_tile(tile)
        check_tile_batch(tile_batch)
        env_canvas_budget()  # a bad SRCLI_CANVAS_MB is a usage error before any work
        shard_spec = parse_shard(shard)
        apply_pixel_limit()
        found, unmatched, names = expand_inputs(inputs, INPUT_SUFFIXES)
        found, earlier = split_earlier_outputs(found)
        outputs = plan_outputs(found, output, target, suffix)
        check_collisions(found, outputs)
        check_overwrites(found, outputs)
    protect_inputs(outputs, found)
    items = take_shard(list(zip(found, outputs)), shard_spec)

    with usage_errors():
        pipe = source.load()
        options = clamp_steps(options, pipe.schedule.T, warn)
        if target.scale is not None:  # a fixed-scale checkpoint refuses other scales here, before any image
            note(pipe.plan_note(target.scale, pipe.passes(target.scale, options)))
    if earlier:
        listed = ", ".join(str(p) for p in earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
        note(f"left out {len(earlier)} earlier output(s) found among the inputs: {listed}")
    job = Job(pipe, file_digest(pipe.source), target, options, seed, same_noise, tile, tile_batch, quality, overwrite)

    failed = 0
    for spec, reason in unmatched:
        failed += 1
        error(f"{spec}: {reason}")
        if json_output:
            emit_json({"command": "upscale", "input": spec, "output": None, "status": "error", "error": f"{spec}: {reason}"})

    counts = {"ok": 0, "skipped": 0, "redone": 0}
    log = LogProgress(len(items))
    try:
        with progress_bar() as progress:
            images_task = progress.add_task("images", total=len(items))
            steps_task = progress.add_task("", total=None, visible=False)

            def on_step(done: int, total: int) -> None:
                progress.update(steps_task, completed=done, total=total)
                log.step(done, total)

            for src, dst in items:
                progress.reset(steps_task, total=None, description=f"  {plain(src.name)}", visible=True)
                log.start(src.name)
                record = _process(job, src, dst, names.get(src, src.name), on_step)
                progress.advance(images_task)
                if record["status"] == "error":
                    failed += 1
                    error(record["error"])
                else:
                    counts[record["status"]] += 1
                    counts["redone"] += record.get("redone", False)
                    for message in record.get("warnings", []):
                        warn(f"{src}: {message}")
                if json_output:
                    emit_json(record)
                log.finish(record["status"] if record["status"] != "ok" else f"wrote {dst}")  # after the counts: Ctrl-C now reports it
            progress.update(steps_task, visible=False)
    except (KeyboardInterrupt, Interrupted):
        finished = counts["ok"] + counts["skipped"]
        err_console.print(
            f"interrupted: {finished} of {len(items)} images finished ({counts['ok']} written, {counts['skipped']} already complete); "
            "the unfinished output was not written; rerun the same command to resume",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED)

    redone = f" ({counts['redone']} redone: made from another input version, model or settings)" if counts["redone"] else ""
    summary = f"{counts['ok']} written{redone}, {counts['skipped']} already complete (skipped), {failed} failed"
    err_console.print(summary, highlight=False)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _process(job: Job, src: Path, dst: Path, name: str, on_step) -> dict[str, Any]:
    """Upscale one file; never raises for a bad file (the record says what went wrong)."""
    record: dict[str, Any] = {"command": "upscale", "input": str(src), "output": str(dst)}
    start = time.perf_counter()
    try:
        remove_stale_temps(dst)  # left by a run killed while writing this output
        image = read_image(src)
        scale = job.target.scale_for(image.size)
        passes = job.pipe.passes(scale, job.options)
        seed = job.seed if job.same_noise else image_seed(job.seed, name)
        out_size = scaled_size(image.size, scale)
        fmt = output_format(dst)
        settings = {
            "size": [out_size[1], out_size[0]], "passes": [asdict(p) for p in passes], "seed": seed, "sampler": job.options.sampler,
            "tile": job.tile, "precision": str(job.pipe.dtype).replace("torch.", ""), "format": fmt,
            "quality": job.quality if fmt in _LOSSY else None,
        }
        # flags added later are recorded only when set, so outputs made before them still match
        if job.options.temperature != 1.0:
            settings["temperature"] = job.options.temperature
        if job.options.eta:
            settings["eta"] = job.options.eta
        if job.pipe.deblocks(job.options):
            settings["deblock"] = True
        fp = fingerprint(file_digest(src), job.model_digest, settings)
        facts = {
            **record, "size": [out_size[1], out_size[0]], "input_size": [image.size[1], image.size[0]], "scale": scale,
            **run_settings(job.pipe, passes, seed, job.options),
        }
        complete = is_complete_image(dst, out_size)
        if complete and not job.overwrite and note_fingerprint(read_note(dst)) == fp:
            return {**facts, "status": "skipped", "seconds": time.perf_counter() - start}
        result = job.pipe.upscale_image(image, scale, job.options, seed=seed, tile=job.tile, tile_batch=job.tile_batch, callback=on_step)
        written = write_image(dst, result, quality=job.quality, note=make_note(fp, settings))
    except (ImageReadError, ImageWriteError) as exc:
        return {**record, "status": "error", "error": str(exc)}
    except (UsageError, ValueError, RuntimeError, MemoryError, OSError) as exc:
        return {**record, "status": "error", "error": f"{src}: {_reason(exc)}"}
    return {
        **facts, "status": "ok", "redone": complete and not job.overwrite, "seconds": time.perf_counter() - start,
        "warnings": image.warnings + written,
    }
