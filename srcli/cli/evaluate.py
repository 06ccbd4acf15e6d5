"""``srcli eval``: the quality protocol of docs/protocol.md on a folder of HR images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from ..data import DEGRADATIONS
from ..evaluate import BASELINES, DEFAULT_BASELINES, SRCLI, EvalReport, Scores, check_baselines, check_save_dir, evaluate_folder
from ..cascade import check_scale
from ..options import SamplingOptions
from ..tiling import check_tile
from .app import app
from .common import (
    EXIT_OK, EXIT_SOME_FAILED, LogProgress, emit_json, err_console, error, fail, note, plain, progress_bar, reflow, run_settings,
    usage_errors, warn,
)
from .options import SEED_MAX, ModelSource, SeedOpt, clamp_steps, model_options, sampling_options

HELP = reflow(f"""Measure srcli against bicubic and Lanczos on a folder of HR images.

Each HR image is cropped so the scale divides it, degraded to LR with Pillow bicubic (8-bit RGB),
upscaled by srcli and by the baselines, and scored against the HR crop: PSNR and SSIM on the Y
channel with a ceil(scale) border, LR-PSNR (consistency with the input) and, with --samples K > 1,
the diversity sigma.  Times are seconds per image (per sample for srcli).  Sample k uses seed
SEED+k.  Scales beyond the model's range run as the cascade of srcli upscale; --strength and
--init default as there.  Baselines: {', '.join(BASELINES)} (encoder = the checkpoint's RRDB regression output of the input as srcli takes it, deblocked when srcli deblocks it).

Examples:

  srcli eval data/val --scale 4

  srcli eval data/val --scale 4 --steps 100 --samples 4 --save-dir eval-out/

  srcli eval photos/ --scale 2.5 --limit 5 --json > report.json

  srcli eval data/val --scale 4 --degradation real --degradation-seed 0   # photos as they arrive: blur, noise, JPEG

Exit codes: 0 success, 1 some images could not be evaluated, 2 usage error.
""")


def _fmt(value: Optional[float], digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


def _add_rows(table: Table, label: str, scores: dict[str, Scores], bold: bool = False, grid: bool = False) -> None:
    for i, (method, s) in enumerate(scores.items()):
        style = "bold" if bold else ("cyan" if method == SRCLI else None)
        cells = [plain(label) if i == 0 else "", method, _fmt(s.psnr_y, 2), _fmt(s.ssim_y, 4), _fmt(s.lr_psnr, 2), _fmt(s.sigma, 2)]
        if grid:
            cells.append(_fmt(s.block_grid, 2))
        table.add_row(*cells, _fmt(s.seconds, 3), style=style)


def render_table(report: EvalReport) -> Table:
    st = report.settings
    title = f"srcli eval {st['scale']:g}x"
    if "steps" in st:
        title += f", {st['steps']} {st['sampler']} steps, {st['samples']} sample(s), seed {st['seed']}"
        title += ", strength " + " then ".join(f"{s['strength']:g}" for s in st["stages"])
        if any(s["strength"] < 1 for s in st["stages"]):
            title += f" from {st['stages'][0]['init']}"
    grid = "degradation_seed" in st
    if grid:
        title += f"; real-world degradation, seed {st['degradation_seed']}"
    caption = f"PSNR/SSIM on Y against the clean HR, border {st['border']}px; time in s per image"
    if grid:
        caption += "; grid: JPEG block grid visibility (1.0 = none)"
    table = Table(title=title, caption=caption)
    columns = ["PSNR-Y", "SSIM-Y", "LR-PSNR", "sigma"] + (["grid"] if grid else []) + ["s/img"]
    table.add_column("image", justify="left")
    table.add_column("method", justify="left")
    for name in columns:
        table.add_column(name, justify="right")
    for image in report.images:
        _add_rows(table, image.name, image.scores, grid=grid)
        table.add_section()
    if report.images:
        _add_rows(table, f"mean ({len(report.images)})", report.mean(), bold=True, grid=grid)
    return table


@app.command("eval", help=HELP)
@sampling_options()
@model_options
def eval_command(
    hr_dir: Annotated[Path, typer.Argument(help="Folder of HR images (searched recursively).", show_default=False)],
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor from 1.5 to 8; fractional scales work, beyond the model's range a cascade.")] = 4.0,
    options: SamplingOptions = SamplingOptions(),
    samples: Annotated[int, typer.Option("--samples", "-k", help="srcli samples per image; K > 1 also reports the diversity sigma.")] = 1,
    baselines: Annotated[str, typer.Option("--baselines", help=f"Comma-separated, from {', '.join(BASELINES)}; empty for none.")] = ",".join(DEFAULT_BASELINES),
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON record on stdout instead of the table (docs/json.md).")] = False,
    save_dir: Annotated[Optional[Path], typer.Option("--save-dir", help="Write srcli outputs and side-by-side comparison crops here.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N images (sorted by path).")] = None,
    tile: Annotated[Optional[int], typer.Option("--tile", help="HR tile side in px (0 = no tiling). Default: auto from a memory budget, as srcli upscale.")] = None,
    seed: SeedOpt = 0,
    degradation: Annotated[str, typer.Option("--degradation", help="How the LR inputs are made: bicubic (the clean protocol) or real (blur, resize, noise, JPEG: srcli.degrade; scored against the clean HR, with a JPEG block-grid measure).")] = "bicubic",
    degradation_seed: Annotated[int, typer.Option("--degradation-seed", min=0, max=SEED_MAX, help="Seed of the real-world degradation (with each image's name).")] = 0,
    source: ModelSource = ModelSource(),
) -> None:
    with usage_errors():
        scale = check_scale(scale)
        if not hr_dir.is_dir():
            fail(f"{hr_dir}: not a folder")
        check_tile(tile)
        if samples < 1:
            fail(f"--samples must be >= 1, got {samples}")
        if seed + samples - 1 > SEED_MAX:
            fail(f"--seed {seed} --samples {samples}: the last sample's seed {seed + samples - 1} is above 2^63-1")
        if limit is not None and limit < 1:
            fail(f"--limit must be >= 1, got {limit}")
        if save_dir is not None and save_dir.exists() and not save_dir.is_dir():
            fail(f"--save-dir {save_dir}: exists and is not a folder")
        check_save_dir(hr_dir, save_dir)
        names = check_baselines(baselines.split(","))
        if degradation not in DEGRADATIONS:
            fail(f"--degradation {degradation}: expected one of {', '.join(DEGRADATIONS)}")
        pipe = source.load()
        options = clamp_steps(options, pipe.schedule.T, warn)
        passes = pipe.passes(scale, options)
        note(pipe.plan_note(scale, passes))
    started = time.perf_counter()

    with progress_bar() as progress:
        images_task = progress.add_task("images", total=None)
        steps_task = progress.add_task("steps", total=None, visible=False)

        log = LogProgress(0)  # without a terminal: a line per image, and one a minute on long ones

        def on_image(index: int, total: int, name: str) -> None:
            progress.update(images_task, completed=index, total=total, description=plain(name))
            if index:
                log.finish("done")
            log.total = total
            log.start(name)

        def on_step(done: int, total: int) -> None:
            progress.update(steps_task, completed=done, total=total, visible=True)
            log.step(done, total)

        with usage_errors():
            report = evaluate_folder(
                hr_dir, pipe, limit=limit, scale=scale, options=options, samples=samples, seed=seed, baselines=names, save_dir=save_dir,
                tile=tile, on_image=on_image, on_step=on_step, degradation=degradation, degradation_seed=degradation_seed,
            )
        progress.update(images_task, completed=len(report.images) + len(report.failed))
        log.finish("done")
    report.settings["threads"] = torch.get_num_threads()

    for name, reason in report.failed:
        error(f"skipped {name}: {reason}")
    if report.save_error:
        error(f"--save-dir: {report.save_error}; the outputs from there on were not saved (the scores below are complete)")
    try:
        if json_out:
            emit_json({
                "command": "eval", "input": str(hr_dir), "output": None if save_dir is None else str(save_dir),
                **run_settings(pipe, passes, seed, options), "seconds": time.perf_counter() - started, **report.to_dict(),
            })
        else:
            Console(highlight=False).print(render_table(report))
    except OSError as exc:  # stdout redirected to a full disk, say
        fail(f"cannot write the report to stdout ({exc.strerror or exc})", EXIT_SOME_FAILED)
    if save_dir is not None and report.images and not report.save_error:
        err_console.print(f"outputs and comparison crops written to {plain(save_dir)}")
    raise typer.Exit(EXIT_SOME_FAILED if report.failed or report.save_error else EXIT_OK)
