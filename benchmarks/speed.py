"""Seconds per reverse step and end to end at 4x for 64^2 .. 512^2 LR inputs (CPU, fp32, untiled).

    python3 benchmarks/speed.py                # the README's numbers (~6 min on 2 cores)
    python3 benchmarks/speed.py --quick        # smoke run, tiny sizes

Per size: the encoder time is one ``SRPipeline.condition`` call (LR encoder + projection to the HR
grid, run once per image); then one ``SRPipeline.upscale`` with the default steps and sampler at
strength 1 (every one of the steps; the default strength runs its share of them) on the whole
image (``tile=0``): its wall time is the end-to-end number (LR array in, PIL image out) and the
median interval between its progress callbacks is the time of one reverse step (one U-Net evaluation
plus the sampler's update).  What tiling costs on top is in memory.py's time column.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import _common as c


def measure(pipe, lr_size: int, scale: float, steps: int, sampler: str) -> dict:
    rng = np.random.default_rng(lr_size)
    image = rng.integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8)  # content does not change the cost
    hr_size = round(lr_size * scale)
    x = pipe.to_input(image)
    c.sync(pipe.device)
    start = time.perf_counter()
    pipe.condition(x, (hr_size, hr_size))
    c.sync(pipe.device)
    encoder = time.perf_counter() - start

    stamps: list[float] = []
    start = time.perf_counter()
    pipe.upscale(image, scale=scale, steps=steps, seed=0, sampler=sampler, tile=0, strength=1.0,
                 callback=lambda d, t: (c.sync(pipe.device), stamps.append(time.perf_counter())))
    total = time.perf_counter() - start
    intervals = np.diff(stamps).tolist()  # the first step's interval would include the encoder
    return {
        "lr": lr_size, "hr": hr_size, "steps": len(stamps), "encoder_s": encoder,
        "step_s": statistics.median(intervals) if intervals else None,
        "step_s_min": min(intervals) if intervals else None,
        "end_to_end_s": total,
    }


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="LR sizes (default 64 128 256 512)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (default: the pipeline's default)")
    p.add_argument("--sampler", default=None, help="ddpm or ddim (default: the pipeline's default)")
    p.add_argument("--scale", type=float, default=4.0)
    args = p.parse_args()
    from srcli.options import DEFAULT_SAMPLER, DEFAULT_STEPS

    threads = c.setup(args)
    sizes = args.sizes or ([16, 32] if args.quick else [64, 128, 256, 512])
    steps = args.steps or (3 if args.quick else DEFAULT_STEPS)
    sampler = args.sampler or DEFAULT_SAMPLER
    pipe = c.load_pipeline(args)
    pipe.upscale(np.zeros((16, 16, 3), np.uint8), scale=args.scale, steps=2)  # warm-up: lazy init, allocator
    rows = []
    for size in sizes:
        row = measure(pipe, size, args.scale, steps, sampler)
        print(f"{size}px: {row}", flush=True)
        rows.append(row)
    info = c.machine_info(args, pipe.source)
    data = {"machine": info, "model": pipe.describe(), "scale": args.scale, "sampler": sampler,
            "steps": steps, "threads": threads, "rows": rows}
    md = (
        f"### Speed: {args.scale:g}x, {steps} {sampler} steps, {c.run_label(pipe)}, {threads} threads, untiled\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(
            ["LR input", "SR output", "encoder (s)", "s / step", f"end to end, {steps} steps (s)"],
            [[f"{r['lr']}x{r['lr']}", f"{r['hr']}x{r['hr']}", c.fmt(r["encoder_s"]), c.fmt(r["step_s"]),
              c.fmt(r["end_to_end_s"], 2)] for r in rows],
        )
        + f"\nCommand: `{c.command_line()}`\n"
    )
    c.write_results(args, "speed", data, md)


if __name__ == "__main__":
    main()
