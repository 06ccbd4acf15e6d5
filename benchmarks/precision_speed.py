"""srcli at its defaults (4x, one LR image) in two precisions on one device, interleaved run by run in
one process: CPU seconds per image and per reverse step, and how far the second precision's output
is from the first's (PSNR).  On a CPU without native bf16 (no avx512_bf16 / amx_bf16) bf16 is emulated
by oneDNN and is much slower; on one with it, it is the faster one.

    python3 benchmarks/precision_speed.py --threads 1                 # fp32 vs bf16, 64^2 -> 256^2
    python3 benchmarks/precision_speed.py --precisions fp32 fp16 --runs 5
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import _common as c


def main() -> None:
    p = c.parser(__doc__, splits=("val",))
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="the first is the reference")
    p.add_argument("--size", type=int, default=64, help="LR side in px (default 64)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per precision (default 3)")
    args = p.parse_args()
    threads = c.setup(args)
    size = 16 if args.quick else args.size
    pipes = {}
    for precision in args.precisions:
        args.precision = precision
        pipes[precision] = c.load_pipeline(args)
    folder = c.split_folder(p, args) if args.val or not args.quick else None
    if folder is not None and any(folder.iterdir()):
        from PIL import Image

        first = sorted(f for f in folder.iterdir() if f.is_file())[0]
        image = np.asarray(Image.open(first).convert("RGB").resize((size, size), Image.BICUBIC))
    else:
        image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    outputs = {name: np.asarray(pipe.upscale(image, scale=4, seed=0)) for name, pipe in pipes.items()}  # warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in pipes}
    for i in range(args.runs):
        order = list(pipes) if i % 2 == 0 else list(reversed(pipes))
        for name in order:
            stamps: list[float] = []
            c.sync(pipes[name].device)
            start = time.process_time()
            pipes[name].upscale(image, scale=4, seed=0, callback=lambda d, t: (c.sync(pipes[name].device), stamps.append(time.process_time())))
            times[name].append((time.process_time() - start, statistics.median(np.diff(stamps))))
            print(f"  run {i + 1}: {name} {times[name][-1][0]:.2f} s CPU", flush=True)
    ref = outputs[args.precisions[0]].astype(np.float64)
    rows, data = [], {"threads": threads, "size": size, "machine": c.machine_info(args), "rows": []}
    for name in pipes:
        mse = np.mean((outputs[name].astype(np.float64) - ref) ** 2)
        psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
        per_image = statistics.median(t for t, _ in times[name])
        per_step = statistics.median(s for _, s in times[name])
        data["rows"].append({"precision": name, "cpu_s_per_image": per_image, "cpu_s_per_step": per_step, "psnr_vs_first_db": psnr,
                             "runs": times[name]})
        rows.append([name, c.fmt(per_image, 2), c.fmt(per_step, 3), "reference" if name == args.precisions[0] else f"{psnr:.1f} dB"])
    md = (f"### Precision: srcli defaults, 4x from {size}x{size}, {pipes[args.precisions[0]].device.type}, {threads} threads\n\n"
          + c.md_machine(data["machine"]) + "\n"
          + c.md_table(["precision", "CPU s / image (median)", "CPU s / reverse step (median)", f"PSNR vs {args.precisions[0]}"], rows)
          + f"\nCommand: `{c.command_line()}`\n")
    c.write_results(args, "precision_speed", data, md)


if __name__ == "__main__":
    main()
