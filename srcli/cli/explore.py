"""``srcli sample-diverse`` (alias ``sample``) and ``srcli interpolate``: the many HR images that fit
one LR image and the path between two of them (Alg. 4); and what they share with ``srcli fuse``."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import numpy as np
import typer
from rich.console import Console

from .. import explore, render
from ..cascade import SCALE_TOLERANCE, check_scale
from ..explore import DIVERSE_STRENGTH
from ..imageio import ImageData, ImageReadError, ImageWriteError, read_image, to_uint8, write_image
from ..options import SamplingOptions, check_seed
from ..pipeline import SRPipeline
from .app import app
from .common import (
    EXIT_SOME_FAILED, EXIT_USAGE, LogProgress, check_writable, emit_json, fail, note, progress_bar, protect_inputs, reflow, run_settings, usage_errors,
    warn,
)
from .options import SEED_MAX, STRENGTH_HELP, JsonOpt, ModelSource, SeedOpt, clamp_steps, model_options, sampling_options

InputArg = Annotated[Path, typer.Argument(help="The LR input image.", show_default=False)]
SCALE_DEFAULT = "Default: the model's scale (a fixed-scale checkpoint's own, else the top of its training range: 4 for the shipped model)."
ScaleOpt = Annotated[Optional[float], typer.Option("--scale", "-s", help=f"Upscaling factor from 1.5 to 8. {SCALE_DEFAULT}")]
# the sampling flags of the decodes from t (Algorithms 3 and 4): strength and init do not apply
DECODE_FLAGS = ("steps", "sampler", "eta", "temperature")

SAMPLE_HELP = """Draw N SR samples of one image, batched through the network in one batch.

One LR image fits many HR images: the samples show them, and the per-pixel standard deviation across the samples shows where the model is inventing detail (bright = the samples disagree).

Writes to DIR (default NAME_samples/): NAME_seedK.png for every seed K = S .. S+N-1 (sample K is what an untiled `srcli upscale --seed K` gives with the same options, --strength included), NAME_sheet.png (contact sheet: LR input, bicubic, samples), NAME_sigma.png (the standard-deviation heatmap with its colour bar). Prints the mean sigma (0-255, the SRDiff paper's diversity number; 6.09 on DIV2K 4x there).

--scale works as in srcli upscale: scales beyond the model's range run as the same cascade of passes. --strength defaults to 1 here (SRDiff's diverse sampling from pure noise: the widest range of plausible detail); a lower strength starts nearer the --init image, so the samples vary less.

Examples:

  srcli sample-diverse photo.png --n 8 -o samples/

  srcli sample photo.png --n 4 --scale 2 --steps 50 --seed 10 --json
"""

INTERP_HELP = """Latent interpolation (SRDiff Algorithm 4) between two SR predictions of one image.

The two predictions A and B come from two seeds (--seeds A,B, default S+1,S+2) or are given as images (--pair SR1.png SR2.png, both the same size; the scale follows from it).  Both are diffused to step t, mixed lam * x_A + (1 - lam) * x_B, and every mix is decoded from t with the LR image as condition (lambda 1 = A, lambda 0 = B).  --seed S drives the algorithm's own noise.

Writes to DIR (default NAME_interp/): NAME_lamL.png per lambda and NAME_strip.png (B, the mixes in the order given, A).

Examples:

  srcli interpolate photo.png --t 50 --lambdas 0,0.4,0.8,1.0 -o interp/

  srcli interpolate photo.png --t 30 --pair sr_a.png sr_b.png
"""

def load_input(path: Path) -> np.ndarray:
    """8-bit RGB of an input (explore works at 8 bits; transparency is not part of the model)."""
    try:
        data = read_image(path)
    except ImageReadError as exc:  # one line; a missing file, a folder or a FIFO is a usage error
        fail(str(exc), EXIT_SOME_FAILED if path.is_file() else EXIT_USAGE)
    for message in data.warnings:
        warn(f"{path}: {message}")
    if data.alpha is not None:
        warn(f"{path}: transparency ignored")
    return to_uint8(data.rgb)


def write_output(path: Path, image: np.ndarray) -> None:
    """Atomic write (srcli.imageio); a failure is one line and exit code 1."""
    try:
        write_image(path, ImageData(image))
    except ImageWriteError as exc:
        fail(str(exc), EXIT_SOME_FAILED)


def check_common(scale: Optional[float]) -> None:
    """What can be checked before the weights load (T and the default scale come with them)."""
    if scale is not None:
        with usage_errors():
            check_scale(scale)


def _parse_numbers(text: str, kind: type, option: str, example: str) -> list[Any]:
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        fail(f"{option} {text!r}: expected comma-separated numbers like {example}")


def stage_progress(progress, log: LogProgress) -> Callable[[str, int, int], None]:
    """An explore callback that shows one progress bar per stage (predictions, t=50, ...), or
    without a terminal a line a minute (``LogProgress``)."""
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)
        log.step(done, total)

    return update


@contextmanager
def computing(log: LogProgress, hint: str) -> Iterator[None]:
    """The compute of one command: its library usage errors one line (exit 2), running out of
    memory one line with ``hint`` (exit 1)."""
    try:
        with usage_errors():
            yield
    except (RuntimeError, MemoryError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, MemoryError) or "out of memory" in text.lower():
            log.finish("out of memory")
            fail(f"out of memory ({text[:160]}); {hint}", EXIT_SOME_FAILED)
        raise


def json_record(command: str, input: Path, output: Path, image: np.ndarray, lr: np.ndarray, scale: float, started: float, **settings: Any) -> dict[str, Any]:
    """An output's ``--json`` record in the fields and order of ``srcli upscale``'s (docs/json.md)."""
    return {
        "command": command, "status": "ok", "input": str(input), "output": str(output), "size": [image.shape[1], image.shape[0]],
        "input_size": [lr.shape[1], lr.shape[0]], "scale": scale, **settings, "seconds": time.perf_counter() - started,
    }


def decode_settings(pipe: SRPipeline, t: int, options: SamplingOptions, seed: int) -> dict[str, Any]:
    """What a decode from step t runs: the reverse steps actually taken, the strength t/T it starts
    at (the same meaning as upscale's --strength), the seed and the sampler."""
    return {
        "model": pipe.source, "sampler": options.sampler, "seed": seed, "steps": explore.steps_run(pipe, t, options),
        "strength": t / pipe.schedule.T, "t": t,
    }


def load_pipeline(
    source: ModelSource, options: SamplingOptions, scale: Optional[float], cascade: bool = False,
) -> tuple[SRPipeline, SamplingOptions, float]:
    """The pipeline, the options it will run (at most T steps) and the scale (the model's default
    when None), with a warning for a scale the model was not trained on, or with ``cascade`` (a
    command that runs ``SRPipeline.passes``) a note on how the scale runs."""
    with usage_errors():
        pipe = source.load()
        scale = check_scale(explore.default_scale(pipe) if scale is None else scale)
        options = clamp_steps(options, pipe.schedule.T, warn)
        if cascade:
            note(pipe.plan_note(scale, pipe.passes(scale, options)))
    low, high = pipe.config.train_scales
    inside = low * (1 - SCALE_TOLERANCE) <= scale <= high * (1 + SCALE_TOLERANCE)
    if not cascade and pipe.config.fixed_scale is None and not inside:
        warn(f"the model was trained on {low:g}x-{high:g}x; {scale:g}x is outside that range")
    return pipe, options, scale


def say(message: str) -> None:
    Console(highlight=False).print(message, soft_wrap=True, markup=False)


@app.command("sample-diverse", help=reflow(SAMPLE_HELP))
@sampling_options(
    defaults={"strength": DIVERSE_STRENGTH},
    helps={"strength": STRENGTH_HELP + " Default: 1 here (the full sampler), not upscale's per-scale value."},
)
@model_options
def sample_diverse_command(
    input: InputArg,
    n: Annotated[int, typer.Option("--n", "-n", help="Number of samples (one batch).")] = 8,
    scale: ScaleOpt = None,
    options: SamplingOptions = SamplingOptions(),
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX, help="First seed; the samples use seeds S .. S+N-1.")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", "-o", help="Output folder (default NAME_samples/).")] = None,
    source: ModelSource = ModelSource(),
    json_out: JsonOpt = False,
) -> None:
    check_common(scale)
    if n < 1:
        fail(f"--n must be >= 1, got {n}")
    if seed + n - 1 > SEED_MAX:
        fail(f"--seed {seed} --n {n}: the last sample's seed {seed + n - 1} is above 2^63-1")
    image = load_input(input)
    out_dir = out_dir or Path(f"{input.stem}_samples")
    stem = input.stem
    paths = {s: out_dir / f"{stem}_seed{s}.png" for s in range(seed, seed + n)}
    sheet_path, sigma_path = out_dir / f"{stem}_sheet.png", out_dir / f"{stem}_sigma.png"
    protect_inputs([*paths.values(), sheet_path, sigma_path], [input])
    check_writable([*paths.values(), sheet_path, sigma_path])
    pipe, options, scale = load_pipeline(source, options, scale, cascade=True)

    log, started = LogProgress(1), time.perf_counter()
    log.start(str(input))
    with progress_bar() as progress, computing(log, "try a smaller --n (the samples run in one batch) or a smaller input"):
        result = explore.sample_diverse(
            pipe, image, n, scale, options, seed=seed, callback=stage_progress(progress, log), output="numpy")
    for s, sample in zip(result.seeds, result.samples):
        write_output(paths[s], sample)
    write_output(sheet_path, render.contact_sheet(result))
    write_output(sigma_path, render.heatmap(result.sigma_map, result.mean_sigma))

    log.finish(f"wrote {n} samples to {out_dir}/")
    h, w = result.samples[0].shape[:2]
    if json_out:
        passes = pipe.passes(scale, options)
        for s, sample in zip(result.seeds, result.samples):
            emit_json(json_record(
                "sample-diverse", input, paths[s], sample, image, scale, started, **run_settings(pipe, passes, s, options),
                temperature=options.temperature, contact_sheet=str(sheet_path), sigma_map=str(sigma_path), mean_sigma=result.mean_sigma,
            ))
    else:
        say(f"{n} samples {w}x{h} of {input} in {out_dir}/ (sheet {sheet_path.name}, sigma map {sigma_path.name})")
        say(f"mean sigma {result.mean_sigma:.2f} (per-pixel std across samples, 0-255)")


# The design card's short name; hidden so --help lists the command once.
app.command("sample", help=reflow(SAMPLE_HELP), hidden=True)(sample_diverse_command)


@app.command("interpolate", help=reflow(INTERP_HELP))
@sampling_options(*DECODE_FLAGS, "consistency", "deblock")
@model_options
def interpolate_command(
    input: InputArg,
    t: Annotated[int, typer.Option("--t", help="Diffusion step t in [0, T] both predictions are diffused to.")] = 50,
    lambdas: Annotated[str, typer.Option("--lambdas", help="Comma-separated mixing weights in [0, 1].")] = "0,0.4,0.8,1.0",
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="A,B: the seeds of the two SR predictions (default S+1,S+2).")] = None,
    pair: Annotated[Optional[tuple[Path, Path]], typer.Option("--pair", help="Two SR images of INPUT (same size) instead of --seeds.")] = None,
    scale: ScaleOpt = None,
    options: SamplingOptions = SamplingOptions(),
    seed: SeedOpt = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", "-o", help="Output folder (default NAME_interp/).")] = None,
    source: ModelSource = ModelSource(),
    json_out: JsonOpt = False,
) -> None:
    check_common(scale)
    if t < 0:
        fail(f"t must be in [0, T] (the model's T), got {t}")
    with usage_errors():
        lams = explore.check_lambdas(_parse_numbers(lambdas, float, "--lambdas", "0,0.4,0.8,1.0"))
    labels = [f"{lam:g}" for lam in lams]  # the file names and records hold 6 significant digits
    if len(set(labels)) != len(labels):
        fail(f"--lambdas {lambdas!r}: every lambda may appear only once (values equal to 6 significant digits share one file name)")
    seed_pair = None
    if seeds is not None:
        if pair is not None:
            fail("give either --seeds or --pair, not both")
        seed_pair = _parse_numbers(seeds, int, "--seeds", "3,7")
        if len(seed_pair) != 2:
            fail(f"--seeds {seeds!r}: expected two seeds A,B")
        with usage_errors():
            for value in seed_pair:
                check_seed(value, "--seeds")
    elif pair is None and seed + 2 > SEED_MAX:
        fail(f"--seed {seed}: the predictions' default seeds S+1, S+2 are above 2^63-1; give --seeds A,B")
    image = load_input(input)
    images_pair = None if pair is None else (load_input(pair[0]), load_input(pair[1]))
    out_dir = out_dir or Path(f"{input.stem}_interp")
    paths = [out_dir / f"{input.stem}_lam{label}.png" for label in labels]
    strip_path = out_dir / f"{input.stem}_strip.png"
    protect_inputs([*paths, strip_path], [input, *(pair or ())])
    check_writable([*paths, strip_path])
    pipe, options, scale = load_pipeline(source, options, scale)

    log, started = LogProgress(1), time.perf_counter()
    log.start(str(input))
    with progress_bar() as progress, computing(log, "try a smaller input or fewer --lambdas (the mixes run in one batch)"):
        result = explore.latent_interpolation(
            pipe, image, t, lams, None if seed_pair is None else tuple(seed_pair), images_pair, None if pair else scale, options,
            seed=seed, callback=stage_progress(progress, log), output="numpy")
    for path, img in zip(paths, result.images):
        write_output(path, img)
    write_output(strip_path, render.interpolation_strip(result))

    log.finish(f"wrote {len(paths)} interpolations to {out_dir}/")
    if json_out:
        for lam, path, img in zip(result.lambdas, paths, result.images):
            emit_json(json_record(
                "interpolate", input, path, img, image, img.shape[1] / image.shape[1], started, **decode_settings(pipe, t, options, seed),
                temperature=options.temperature, **{"lambda": lam}, seeds=None if result.seeds is None else list(result.seeds), strip=str(strip_path),
            ))
    else:
        source = "the given pair" if result.seeds is None else f"seeds {result.seeds[0]} and {result.seeds[1]}"
        say(f"{len(paths)} interpolations at t={t} between {source} in {out_dir}/ (strip {strip_path.name})")
