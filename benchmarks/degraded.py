"""Both protocols side by side: clean (Pillow bicubic LR) and real-world (srcli.degrade LR, seeded),
for bicubic, the shipped models' encoders and the models at their default settings.

    python3 benchmarks/degraded.py                                   # ~10 min on 2 idle cores
    python3 benchmarks/degraded.py --strengths 0,0.2,0.4,0.6 --split tune   # pick the real model's defaults
    python3 benchmarks/degraded.py --quick --weights tiny.safetensors --real-weights tiny.safetensors

Every number is ``srcli.evaluate`` at 4x on the 256x256 crops of a held-out split: PSNR/SSIM on Y
against the clean HR crop (ceil(scale) border), the JPEG block-grid measure (1.0 = no grid; only
on the real-world protocol) and seconds per image.  The real-world LR of each crop is
``degrade_real`` seeded with ``--degradation-seed`` and the crop's name, the same for every method.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

import _common as c

PROTOCOLS = ("bicubic", "real")


def main() -> None:
    p = c.parser(__doc__, splits=["val", "tune"])
    p.add_argument("--real-weights", default=None, help="the real-world model (default: the shipped 'real' model)")
    p.add_argument("--split", choices=("val", "tune"), default="val", help="which held-out split to run on")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--strengths", default=None,
                   help="comma-separated strengths to run each model at, besides its default (e.g. 0,0.2,0.4)")
    p.add_argument("--degradation-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="which protocols to run (bicubic, real)")
    p.add_argument("--models", default="clean,real", help="which models to run (clean, real)")
    p.add_argument("--limit", type=int, default=None, help="use the first N crops only")
    args = p.parse_args()
    from srcli.evaluate import SRCLI, evaluate_folder
    from srcli.metrics import block_grid_at_input_scale

    folder = c.split_folder(p, args, args.split)
    threads = c.setup(args)
    limit = args.limit or (2 if args.quick else None)
    steps = 2 if args.quick else None
    chosen = args.models.split(",")
    models = {name: c.load_pipeline(args, name, args.real_weights if name == "real" else args.weights)
              for name in ("clean", "real") if name in chosen}
    protocols = [p_ for p_ in PROTOCOLS if p_ in args.protocols.split(",")]
    strengths: list[Optional[float]] = [None]
    if args.strengths:
        strengths += [float(s) for s in args.strengths.split(",")]

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for protocol in protocols:
        common = dict(limit=limit, scale=args.scale, seed=args.seed, degradation=protocol,
                      degradation_seed=args.degradation_seed)
        if steps:
            common["steps"] = steps
        for name, pipe in models.items():
            baselines = ["encoder"] + (["bicubic"] if name == next(iter(models)) else [])
            # the model's defaults, the same with its default deblocking flipped, then other strengths
            runs = [(None, None), (None, not pipe.default_deblock)] + [(s_, None) for s_ in strengths[1:]]
            for strength, deblock in runs:
                first = strength is None and deblock is None
                coarse: dict[str, list[float]] = {}  # block_grid_at_input_scale per method (real-world protocol)

                def on_output(name: str, method: str, out: np.ndarray, hr: np.ndarray) -> None:
                    coarse.setdefault(method, []).append(block_grid_at_input_scale(out, args.scale))

                report = evaluate_folder(folder, pipe, strength=strength, deblock=deblock, baselines=baselines if first else [],
                                         on_output=on_output if protocol == "real" else None, **common)
                if report.failed:
                    raise SystemExit(f"could not evaluate: {report.failed}")
                for method, s in report.mean().items():
                    if method == SRCLI:
                        label = f"{name} model, " + ("default strength" if strength is None else f"strength {strength:g}")
                        if deblock is not None:
                            label += ", deblocked" if deblock else ", not deblocked"
                        used = " then ".join(f"{st['strength']:g}" for st in report.settings["stages"])
                    else:
                        label, used = ("bicubic" if method == "bicubic" else f"{name} model, encoder only"), "-"
                    row = {"protocol": protocol, "method": label, "strength": used, "psnr_y": s.psnr_y, "ssim_y": s.ssim_y,
                           "block_grid": s.block_grid,
                           "block_grid_input_scale": float(np.mean(coarse[method])) if method in coarse else None,
                           "lr_psnr": s.lr_psnr, "seconds": s.seconds,
                           "images": len(report.images)}
                    rows.append(row)
                    print(row, flush=True)
    elapsed = time.perf_counter() - start
    info = c.machine_info(args, next(iter(models.values())).source)
    data = {"machine": info, "models": {k: v.describe() for k, v in models.items()}, "split": str(folder),
            "scale": args.scale, "seed": args.seed, "degradation_seed": args.degradation_seed, "threads": threads,
            "rows": rows, "seconds_total": elapsed}
    name = "degraded" if args.split == "val" else f"degraded-{args.split}"
    c.write_results(args, name, data, markdown(rows, info, args, elapsed))



def markdown(rows: list[dict[str, Any]], info: dict[str, Any], args: Any, elapsed: float) -> str:
    out = [f"### Clean and real-world inputs at {args.scale:g}x: {rows[0]['images']} {args.split} crops\n\n", c.md_machine(info), "\n"]
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        title = ("Clean protocol (Pillow bicubic LR)" if protocol == "bicubic"
                 else f"Real-world protocol (srcli.degrade LR, degradation seed {args.degradation_seed})")
        out.append(f"#### {title}\n\n")
        table = [[r["method"], r["strength"], c.fmt(r["psnr_y"], 2), c.fmt(r["ssim_y"], 4),
                  c.fmt(r["block_grid"], 2), c.fmt(r.get("block_grid_input_scale"), 2), c.fmt(r["seconds"], 2)]
                 for r in rows if r["protocol"] == protocol]
        out.append(c.md_table(["method", "strength", "PSNR-Y (dB)", "SSIM-Y", "block grid", "grid at input scale", "s / image"], table)
                   + "\n")
    out.append("Block grid: `srcli.metrics.block_grid` (one output step per grid line); grid at input scale: "
               "`block_grid_at_input_scale` (steps between the output pixels at the centres of neighbouring input pixels), "
               "the cross-check a filter on the output's grid lines cannot move. 1.0 = no grid.\n\n")
    out.append("Default settings JPEG-deblock the real model's input (`--deblock`, `srcli.deblock`) and not the clean model's; "
               "the rows marked deblocked / not deblocked flip that.\n\n")
    out.append(f"Command: `{c.command_line()}` ({elapsed / 60:.1f} min)\n")
    return "".join(out)


if __name__ == "__main__":
    main()
