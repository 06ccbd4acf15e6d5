"""``srcli convert``: the SRDiff authors' released ``.ckpt`` -> a srcli safetensors checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..convert import convert_official
from .app import app
from .common import EXIT_SOME_FAILED, emit_json, fail, reflow, usage_errors
from .options import JsonOpt

HELP = reflow("""Convert an SRDiff authors' checkpoint (.ckpt) into a srcli checkpoint.

The model (scale, RRDB blocks, U-Net widths) is read from the tensor shapes; the
diffusion schedule is the checkpoint's own betas.  The .ckpt is read with PyTorch's
weights-only loader: a file that would need to run code to load is refused, never
executed.  The result works at the checkpoint's scale only (8x faces, 4x DIV2K): the
paper projects the LR features with a fixed-stride transposed convolution.

Examples:

  srcli convert model_ckpt_steps_400000.ckpt weights/srdiff-celeba-x8.safetensors

  srcli convert df2k4x.ckpt df2k4x.safetensors --half          # fp16 weights, half the size

  srcli upscale face.png --scale 8 --weights weights/srdiff-celeba-x8.safetensors
""")


@app.command("convert", help=HELP)
def convert_command(
    source: Annotated[Path, typer.Argument(metavar="AUTHORS.ckpt", help="The authors' checkpoint (a torch pickle).", show_default=False)],
    output: Annotated[Path, typer.Argument(metavar="OUT.safetensors", help="The srcli checkpoint to write.", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT.safetensors if it exists.")] = False,
    half: Annotated[
        bool, typer.Option("--half", help="Store fp16 weights (half the size; predictions move slightly from the original's).")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    started = time.perf_counter()
    with usage_errors():
        try:
            info = convert_official(source, output, overwrite=overwrite, half=half)
        except OSError as exc:  # reading worked (it is checked first); writing the output did not
            fail(f"{output}: cannot write ({exc.strerror or exc})", EXIT_SOME_FAILED)
    if json_output:  # the fields every command's record starts with (docs/json.md), then what convert found
        emit_json({"command": "convert", "status": "ok", "input": str(source), "output": str(output), **info,
                   "seconds": time.perf_counter() - started})
        return
    mults = "|".join(map(str, info["unet_mults"]))
    schedule = "cosine" if info["schedule_is_cosine"] else "not the cosine schedule"
    ignored = info["ignored_entries"] + ([f"{len(info['ignored_buffers'])} derived diffusion buffers"] if info["ignored_buffers"] else [])
    typer.echo(f"wrote {output}  ({info['dtype']}, {info['params']:,} parameters)")
    typer.echo(
        f"  {info['scale']}x only; RRDB {info['rrdb_blocks']} blocks (nf {info['rrdb_nf']}, gc {info['rrdb_gc']}); "
        f"U-Net {info['unet_dim']} x {mults}"
    )
    typer.echo(
        f"  schedule: {info['schedule']}, T = {info['timesteps']} ({schedule}, max |beta - Nichol cosine| "
        f"{info['betas_max_abs_diff_from_cosine']:.1e})"
    )
    if ignored:
        typer.echo(f"  ignored: {', '.join(ignored)}")
    typer.echo(f"  use: srcli upscale IMAGE --scale {info['scale']} --weights {output}")
