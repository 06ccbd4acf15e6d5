"""Peak memory of a 4x upscale of 64^2 .. 512^2 LR inputs, untiled, tiled and with the automatic
tile size of ``srcli upscale`` (CPU, fp32).

    python3 benchmarks/memory.py               # the README's numbers (~4 min on 2 cores)
    python3 benchmarks/memory.py --quick       # smoke run, tiny sizes
    python3 benchmarks/memory.py --sizes 1024 --tiles 256 --canvas-mb 0 1024   # regions (design.md)

``--canvas-mb`` runs every case once per canvas budget (``SRCLI_CANVAS_MB``; 0 = srcli's default),
so an output too large for one canvas is sampled in regions (``srcli.regions``); the rows say how
many.  Results go to ``memory-canvas.*`` then, not to the README's ``memory.*``.

Every case runs in a fresh Python process, so its peak resident set (the kernel's high-water mark,
``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that case alone.  The child reports the
high-water mark after loading the model and after the upscale; the difference is what the image
itself costs.  The peak of one reverse step is the peak of the whole run (every step has the same
shapes), so the children run only ``--steps`` (default 2) steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

import numpy as np

import _common as c

CANVAS_ENV = "SRCLI_CANVAS_MB"  # srcli.regions.CANVAS_BUDGET_ENV


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args, lr_size: int, scale: float, tile: Optional[int], steps: int) -> None:
    """One case, in its own process: print a JSON line with the high-water marks."""
    pipe = c.load_pipeline(args)
    used = pipe.tile_settings(scale, tile)[0]
    image = np.random.default_rng(lr_size).integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8)
    loaded = rss_mb()
    totals = []
    start, cpu = time.perf_counter(), cpu_seconds()
    out = pipe.upscale(image, scale=scale, steps=steps, seed=0, tile=tile, strength=1.0,  # all the steps
                       callback=lambda done, total: totals.append(total))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(json.dumps({"loaded_mb": loaded, "peak_mb": rss_mb(), "seconds": seconds, "cpu_seconds": cpu,
                      "out": list(out.size), "tile_px": used, "regions": totals[-1] // steps if totals else None}))


def run_case(args, lr_size: int, tile: str, canvas_mb: Optional[float] = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--lr", str(lr_size), "--tiles", tile,
           "--steps", str(args.steps), "--scale", str(args.scale),
           "--device", args.device, "--precision", args.precision]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.default_malloc:
        cmd.append("--default-malloc")
    env = dict(os.environ)
    env.pop(CANVAS_ENV, None)
    if canvas_mb:
        env[CANVAS_ENV] = f"{canvas_mb:g}"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    row = {"lr": lr_size, "hr": round(lr_size * args.scale), "tile": tile, "canvas_mb": canvas_mb}
    if proc.returncode != 0:  # e.g. killed by the OOM killer: that is a result too
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        return {**row, "error": reason}
    return {**row, **json.loads(proc.stdout.strip().splitlines()[-1])}


def tiling_label(row: dict) -> str:
    if row["tile"] == "0":
        return "off"
    used = row.get("tile_px")
    if row["tile"] == "auto":
        return f"auto ({used} px)" if used else "auto"
    return f"{row['tile']} px"


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="LR sizes (default 64 128 256 512)")
    p.add_argument("--tiles", nargs="+", default=None,
                   help="HR tile sides to compare: 0 = off, auto = srcli upscale's choice (default: 0 256 auto)")
    p.add_argument("--steps", type=int, default=2, help="reverse steps per case (the peak does not depend on it)")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--canvas-mb", type=float, nargs="+", default=None,
                   help="canvas budgets in MB to run each case with (0 = srcli's default); adds the regions column")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lr", type=int, default=64, help=argparse.SUPPRESS)
    args = p.parse_args()
    threads = c.setup(args)
    if args.child:
        child(args, args.lr, args.scale, None if args.tiles[0] == "auto" else int(args.tiles[0]), args.steps)
        return
    sizes = args.sizes or ([16, 32] if args.quick else [64, 128, 256, 512])
    tiles = args.tiles or (["0", "32", "auto"] if args.quick else ["0", "256", "auto"])
    rows = []
    budgets = args.canvas_mb or [None]
    for size in sizes:
        for t in tiles:
            for mb in budgets:
                row = run_case(args, size, t, mb)
                print(f"{size}px tile {t} canvas {mb}: {row}", flush=True)
                rows.append(row)
    info = c.machine_info(args, args.weights)
    info["threads"] = threads
    data = {"machine": info, "scale": args.scale, "steps": args.steps, "tiles": tiles, "canvas_mb": args.canvas_mb, "rows": rows}

    def cell(r: dict, key: str, digits: int = 0) -> str:
        return r["error"] if "error" in r else c.fmt(r[key], digits)

    header = ["LR input", "SR output", "tiling", "peak RSS (MB)", "model loaded (MB)", "image's share (MB)",
              f"time, {args.steps} steps (s)"]
    table = [[f"{r['lr']}x{r['lr']}", f"{r['hr']}x{r['hr']}", tiling_label(r),
              cell(r, "peak_mb"), cell(r, "loaded_mb"),
              "-" if "error" in r else c.fmt(r["peak_mb"] - r["loaded_mb"], 0), cell(r, "seconds", 1)] for r in rows]
    if args.canvas_mb:
        header += ["CPU time (s)", "canvas budget", "regions"]
        for line, r in zip(table, rows):
            line += [cell(r, "cpu_seconds", 1), f"{r['canvas_mb']:g} MB" if r["canvas_mb"] else "default",
                     "-" if "error" in r else str(r.get("regions"))]
    md = (
        f"### Peak memory: {args.scale:g}x, {args.device} {args.precision}, {threads} threads\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(header, table)
        + f"\nPeak = high-water resident set of a fresh process per case.  Command: `{c.command_line()}`\n"
    )
    c.write_results(args, "memory-canvas" if args.canvas_mb else "memory", data, md)


if __name__ == "__main__":
    main()
