"""``srcli fuse``: content fusion (SRDiff Algorithm 3), a region of one HR image blended into another."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import explore, render
from ..imageio import output_format
from ..options import SamplingOptions
from .app import app
from .common import LogProgress, check_writable, emit_json, fail, progress_bar, protect_inputs, reflow, usage_errors
from .explore import (
    DECODE_FLAGS, SCALE_DEFAULT, check_common, computing, decode_settings, load_input, load_pipeline, json_record, say, stage_progress, write_output,
)
from .options import JsonOpt, ModelSource, SeedOpt, model_options, sampling_options

FUSE_HELP = """Content fusion (SRDiff Algorithm 3): blend a region of EYES into FACE.

EYES and FACE are HR images of one size.  The box region of EYES is pasted into FACE, the result's residual against the bicubic-upsampled downscaled FACE (the condition, downscaled by --scale with Pillow bicubic) is diffused to step t and decoded from t; then only the box of the decoded image goes back into FACE, so every pixel outside the box stays exactly FACE's.  Small t keeps EYES' content, large t moves toward what fits FACE (the paper: t = 30, 50, 70).

No --consistency: back-projection forces an output to downscale to an LR image.  Against the condition (FACE's LR) it would put FACE's coarse content back into the box, undoing the fusion; against the paste's LR it would put the paste's colours and seams back at every t, undoing the blending that a larger t is for.  The fused image is the decoded result, as in the paper.

Default box: the eye band of an aligned square face crop, x 0.15-0.85 of the width and y 0.30-0.50 of the height.  One --t writes the fused image to OUT; several --t write a strip to OUT (eye source, face source, the paste, one image per t) and each fused image beside it with _tT added to the name (strip_t30.png, ...).

Examples:

  srcli fuse eyes.png face.png --t 50 -o fused.png

  srcli fuse eyes.png face.png --t 30 --t 50 --t 70 --box 40,76,216,128 -o strip.png
"""



def _parse_box(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    try:
        box = tuple(int(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4:
        fail(f"--box {text!r}: expected four integers x0,y0,x1,y1 (pixels, end-exclusive)")
    return box


@app.command("fuse", help=reflow(FUSE_HELP))
@sampling_options(*DECODE_FLAGS)
@model_options
def fuse_command(
    eyes: Annotated[Path, typer.Argument(help="The eye source (HR image).", show_default=False)],
    face: Annotated[Path, typer.Argument(help="The face source (HR image of the same size).", show_default=False)],
    t: Annotated[Optional[list[int]], typer.Option("--t", help="Diffusion step t in [0, T]; repeat for a strip. Default: 50.")] = None,
    box: Annotated[Optional[str], typer.Option("--box", help="x0,y0,x1,y1 in pixels (end-exclusive). Default: the eye band x 0.15-0.85, y 0.30-0.50.")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help=f"Downscaling of FACE for the condition, from 1.5 to 8 (the paper: 8 for faces). {SCALE_DEFAULT}")] = None,
    options: SamplingOptions = SamplingOptions(),
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output image (default FACE_fused.png).")] = None,
    source: ModelSource = ModelSource(),
    json_out: JsonOpt = False,
    consistency: Annotated[Optional[str], typer.Option("--consistency", metavar="N", help="Not available for fuse (a usage error): back-projection would undo the fusion, see above.", show_default=False)] = None,
) -> None:
    if consistency is not None:
        fail(explore.NO_BACK_PROJECTION)
    check_common(scale)
    ts = t or [50]
    if any(v < 0 for v in ts):
        fail(f"t must be in [0, T] (the model's T), got {min(ts)}")
    if len(set(ts)) != len(ts):
        fail(f"--t {','.join(map(str, ts))}: every t may appear only once")
    pixel_box = None if box is None else _parse_box(box)
    eyes_img, face_img = load_input(eyes), load_input(face)
    if eyes_img.shape != face_img.shape:
        fail(f"{eyes} is {eyes_img.shape[1]}x{eyes_img.shape[0]} but {face} is {face_img.shape[1]}x{face_img.shape[0]}: fuse needs two images of one size")
    with usage_errors():
        explore.resolve_box(pixel_box, face_img.shape[1], face_img.shape[0])
    out = out or Path(f"{face.stem}_fused.png")
    try:
        output_format(out)
    except ValueError as exc:
        fail(str(exc))
    per_t = {v: out.with_name(f"{out.stem}_t{v}{out.suffix}") for v in ts} if len(ts) > 1 else {ts[0]: out}
    protect_inputs([out, *per_t.values()], [eyes, face])
    check_writable([out, *per_t.values()])
    pipe, options, scale = load_pipeline(source, options, scale)

    log, started = LogProgress(1), time.perf_counter()
    log.start(str(face))
    with progress_bar() as progress, computing(log, "try smaller images"):
        result = explore.content_fusion(
            pipe, eyes_img, face_img, ts, pixel_box, scale, options, seed=seed, callback=stage_progress(progress, log), output="numpy")
    for v, img in zip(result.ts, result.images):
        write_output(per_t[v], img)
    if len(ts) > 1:
        write_output(out, render.fusion_strip(result, eyes_img, face_img))

    log.finish(f"wrote {out}")
    if json_out:
        for v, img in zip(result.ts, result.images):
            emit_json(json_record(
                "fuse", face, per_t[v], img, face_img, scale, started, **decode_settings(pipe, v, options, seed),
                temperature=options.temperature, eyes=str(eyes), box=list(result.box), strip=str(out) if len(ts) > 1 else None,
            ))
    else:
        where = f"strip {out}, images {', '.join(p.name for p in per_t.values())}" if len(ts) > 1 else str(out)
        say(f"fused box {','.join(map(str, result.box))} at t={','.join(map(str, ts))}: {where}")
