"""Quality at any scale, in the layout of Diff-SR's Table 1, on the validation split.

    python3 benchmarks/scales.py                                   # ~8 min on 2 idle cores
    python3 benchmarks/scales.py --quick --weights tiny.safetensors   # smoke run, seconds

PSNR/SSIM on Y, LR-PSNR and seconds per image at 2x, 2.7x, 3.5x and 4x (one model pass each) for
bicubic, Lanczos, srcli at full strength (1.0: SRDiff's start from pure noise), srcli at the
default strength of the scale from its default start image, the encoder's regression output
(``pipeline.DEFAULT_STRENGTH``, filled from strength_sweep.py), and the same from the bicubic image
(Diff-SR's start, ``--init bicubic``); and
the same rows at 8x, which runs as a cascade (4x, then 2x with half the steps).  Every number is
``srcli.evaluate`` on the 10 crops of 256x256 (the default 20 ddpm steps, seed 0, the metrics of
docs/protocol.md).  Where the default strength of every pass is 1.0 the srcli rows are one run.

Cost with the shipped c=32 model (~0.25 s per U-Net step at 256x256 on 2 idle cores): full strength
is 10 crops x 20 steps = ~50 s per scale, a default strength F about F times that; 8x is ~40 s per
strength (20 steps at 128x128, then 10 at 256x256).  About 5 min with the table at 1.0, ~8 min with
strengths around 0.5.
"""

from __future__ import annotations

import time
from typing import Any

import _common as c

TABLE_SCALES = (2.0, 2.7, 3.5, 4.0)  # Diff-SR's Table 1
CASCADE_SCALE = 8.0
FULL, DEFAULT, DIFFSR = "srcli, strength 1", "srcli, default strength", "srcli, default strength, --init bicubic"


def main() -> None:
    p = c.parser(__doc__, splits=["val"])
    p.add_argument("--steps", type=int, default=None, help="ddpm steps of a full-strength run (default: the pipeline's, 20)")
    p.add_argument("--limit", type=int, default=None, help="use the first N crops only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from srcli.evaluate import SRCLI, evaluate_folder
    from srcli.options import DEFAULT_STEPS

    val = c.split_folder(p, args)
    threads = c.setup(args)
    steps = args.steps or (2 if args.quick else DEFAULT_STEPS)
    limit = args.limit or (2 if args.quick else None)
    pipe = c.load_pipeline(args)

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for scale in (*TABLE_SCALES, CASCADE_SCALE):
        runs = [(FULL, 1.0, None, ("bicubic", "lanczos"))]
        for label, init in ((DEFAULT, "encoder"), (DIFFSR, "bicubic")):
            if any(s.strength != 1.0 for s in pipe.passes(scale, steps=steps, init=init)):
                runs.append((label, None, init, ()))
        for label, strength, init, baselines in runs:
            report = evaluate_folder(val, pipe, limit=limit, scale=scale, steps=steps, strength=strength, init=init,
                                     seed=args.seed, baselines=baselines)
            if report.failed:
                raise SystemExit(f"could not evaluate: {report.failed}")
            for method, s in report.mean().items():
                row = {"scale": scale, "method": label if method == SRCLI else method, "psnr_y": s.psnr_y,
                       "ssim_y": s.ssim_y, "lr_psnr": s.lr_psnr, "seconds": s.seconds, "images": len(report.images)}
                if method == SRCLI:
                    row["stages"] = report.settings["stages"]
                rows.append(row)
                print(row, flush=True)
        full = next(r for r in rows if r["scale"] == scale and r["method"] == FULL)
        for label in (DEFAULT, DIFFSR):  # a default of full strength: the same run
            if label not in (r[0] for r in runs):
                rows.append({**full, "method": label})
    elapsed = time.perf_counter() - start

    info = c.machine_info(args, pipe.source)
    data = {"machine": info, "model": pipe.describe(), "val": str(val), "steps": steps, "seed": args.seed,
            "threads": threads, "rows": rows, "seconds_total": elapsed}
    c.write_results(args, "scales", data, markdown(rows, info, steps, elapsed))


def _cells(row: dict[str, Any]) -> list[str]:
    return [c.fmt(row["psnr_y"], 2), c.fmt(row["ssim_y"], 4), c.fmt(row["lr_psnr"], 2), c.fmt(row["seconds"], 2)]


def _passes(row: dict[str, Any]) -> str:
    return " then ".join(f"{s['scale']:.3g}x/{s['steps']} steps/strength {s['strength']:g}" for s in row["stages"])


def _strengths(row: dict[str, Any]) -> str:
    return " then ".join(f"{s['strength']:g}" for s in row["stages"])


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], steps: int, elapsed: float) -> str:
    """Table 1's layout (methods down, scales across) for the one-pass scales, then the 8x rows."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    at = {(r["scale"], r["method"]): r for r in rows}
    header = ["method"] + [f"{s:g}x {m}" for s in TABLE_SCALES for m in ("PSNR", "SSIM", "LR-PSNR", "s")]
    table = [[m] + [cell for s in TABLE_SCALES for cell in _cells(at[(s, m)])] for m in methods]
    cascade = [[m, *_cells(at[(CASCADE_SCALE, m)]), _passes(at[(CASCADE_SCALE, m)]) if "stages" in at[(CASCADE_SCALE, m)] else "-"]
               for m in methods]
    strengths = "; ".join(
        f"from the {init} {', '.join(f'{s:g}x {_strengths(at[(s, label)])}' for s in (*TABLE_SCALES, CASCADE_SCALE))}"
        for label, init in ((DEFAULT, "encoder output"), (DIFFSR, "bicubic image")))
    n = rows[0]["images"]
    return (
        f"### Quality by scale: {n} validation crops, {steps} ddpm steps (a start at strength F runs F x that)\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(header, table)
        + f"\nPSNR and SSIM on Y with a ceil(scale) border, LR-PSNR in dB, s = seconds per image.  Default strengths: {strengths}.\n\n"
        + f"#### {CASCADE_SCALE:g}x (a cascade of passes)\n\n"
        + c.md_table(["method", "PSNR-Y (dB)", "SSIM-Y", "LR-PSNR (dB)", "s / image", "passes (scale / steps at strength 1 / strength)"], cascade)
        + f"\nCommand: `{c.command_line()}` ({elapsed / 60:.1f} min)\n"
    )


if __name__ == "__main__":
    main()
