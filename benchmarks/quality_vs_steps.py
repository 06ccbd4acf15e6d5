"""Quality against reverse-step count on the validation split (SR3 Fig. 12's trade-off), with the
bicubic, Lanczos and RRDB-encoder baselines, at 4x.

    python3 benchmarks/quality_vs_steps.py           # the README's numbers (~7 min on 2 cores)
    python3 benchmarks/quality_vs_steps.py --quick   # smoke run: 2 images, few steps

The validation split is 10 HR crops of 256x256 (``srcli prepare-data data/`` rebuilds it in
data/val).  Every row is ``srcli.evaluate`` on the whole split, one sample per image (seed 0), with
the metrics of docs/protocol.md: PSNR/SSIM on Y with a 4 px border, LR-PSNR.
"""

from __future__ import annotations

import _common as c


def main() -> None:
    p = c.parser(__doc__, splits=["val"])
    p.add_argument("--ddpm", type=int, nargs="*", default=None, help="step counts for ddpm (default 4 8 16 32 100)")
    p.add_argument("--ddim", type=int, nargs="*", default=None, help="step counts for ddim, eta 0 (default 4 8 16)")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--limit", type=int, default=None, help="use the first N images only")
    args = p.parse_args()
    from srcli.evaluate import SRCLI, evaluate_folder

    val = c.split_folder(p, args)
    threads = c.setup(args)
    grid = {
        "ddpm": args.ddpm if args.ddpm is not None else ([2, 4] if args.quick else [4, 8, 16, 32, 100]),
        "ddim": args.ddim if args.ddim is not None else ([2] if args.quick else [4, 8, 16]),
    }
    limit = args.limit or (2 if args.quick else None)
    pipe = c.load_pipeline(args)

    rows = []
    baselines = ("bicubic", "lanczos", "encoder")  # computed with the first srcli run only
    for sampler, counts in grid.items():
        for steps in counts:
            report = evaluate_folder(val, pipe, limit=limit, scale=args.scale, steps=steps, sampler=sampler, seed=0,
                                     baselines=baselines)
            if report.failed:
                raise SystemExit(f"could not evaluate: {report.failed}")
            for method, s in report.mean().items():
                row = {"method": method, "psnr_y": s.psnr_y, "ssim_y": s.ssim_y, "lr_psnr": s.lr_psnr,
                       "seconds": s.seconds, "images": len(report.images)}
                if method == SRCLI:
                    row.update(sampler=sampler, steps=steps)
                rows.append(row)
                print(row, flush=True)
            baselines = ()
    info = c.machine_info(args, pipe.source)
    data = {"machine": info, "model": pipe.describe(), "val": str(val), "scale": args.scale, "threads": threads,
            "grid": grid, "rows": rows}
    n = rows[0]["images"] if rows else 0
    md = (
        f"### Quality against steps: {args.scale:g}x on {n} validation crops\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(
            ["method", "sampler", "steps", "PSNR-Y (dB)", "SSIM-Y", "LR-PSNR (dB)", "s / image"],
            [[r["method"], r.get("sampler", "-"), r.get("steps", "-"), c.fmt(r["psnr_y"], 2), c.fmt(r["ssim_y"], 4),
              c.fmt(r["lr_psnr"], 2), c.fmt(r["seconds"], 2)] for r in rows],
        )
        + "\nencoder = the checkpoint's RRDB regression output (the paper's RRDB row).  "
        + f"Command: `{c.command_line()}`\n"
    )
    c.write_results(args, "quality_vs_steps", data, md)


if __name__ == "__main__":
    main()
