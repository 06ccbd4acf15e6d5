"""The saving of running the LR encoder once per image instead of once per reverse step.

    python3 benchmarks/encoder_once.py             # the README's numbers (~1 min on 2 cores)
    python3 benchmarks/encoder_once.py --quick     # smoke run

srcli encodes the LR image once (``engine.Conditioned``: RRDB features projected to the HR grid)
and every reverse step only runs the U-Net.  The naive loop calls ``model.condition`` inside eps_fn,
i.e. at every step.  Both run the same respaced DDPM steps with the same noise; the outputs must be
identical, only the time differs.
"""

from __future__ import annotations

import time

import torch

import _common as c


def timed(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(pipe, lr_size: int, scale: float, steps: int) -> dict:
    from srcli.diffusion import reverse_process
    from srcli.engine import Conditioned, seeded_noise

    model, schedule = pipe.model, pipe.schedule
    hr = (round(lr_size * scale), round(lr_size * scale))
    x_lr = torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(lr_size)) * 2 - 1
    x_T = torch.randn(1, 3, *hr, generator=torch.Generator().manual_seed(1))

    def once() -> torch.Tensor:
        cond = Conditioned(model, x_lr, hr)
        return reverse_process(cond.eps_fn(), schedule, x_T, schedule.T, seeded_noise([0]), SamplingOptions(steps=steps))

    def per_step() -> torch.Tensor:
        scale_t = torch.full((1,), hr[1] / lr_size)

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the naive loop: encode every step
            return model.denoise_fn(x_t, t, model.condition(x_lr, hr), scale_t)

        return reverse_process(eps, schedule, x_T, schedule.T, seeded_noise([0]), SamplingOptions(steps=steps))

    with torch.inference_mode():
        encoder_s, _ = timed(lambda: Conditioned(model, x_lr, hr))
        once_s, a = timed(once)
        naive_s, b = timed(per_step)
    return {
        "lr": lr_size, "hr": hr[0], "steps": steps, "encoder_s": encoder_s,
        "once_step_s": once_s / steps, "per_step_step_s": naive_s / steps,
        "once_total_s": once_s, "per_step_total_s": naive_s,
        "saving": 1 - once_s / naive_s, "identical_outputs": bool(torch.equal(a, b)),
    }


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="LR sizes (default 64 128)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (default 10)")
    p.add_argument("--scale", type=float, default=4.0)
    args = p.parse_args()
    threads = c.setup(args)
    sizes = args.sizes or ([16] if args.quick else [64, 128])
    steps = args.steps or (3 if args.quick else 10)
    pipe = c.load_pipeline(args)
    measure(pipe, 16, args.scale, 2)  # warm-up
    rows = []
    for size in sizes:
        row = measure(pipe, size, args.scale, steps)
        print(row, flush=True)
        rows.append(row)
    info = c.machine_info(args, pipe.source)
    data = {"machine": info, "model": pipe.describe(), "scale": args.scale, "threads": threads, "rows": rows}
    md = (
        f"### Encoder once vs per step: {args.scale:g}x, {steps} ddpm steps, {c.run_label(pipe)}, {threads} threads\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(
            ["LR input", "SR output", "encoder (s)", "s / step, encoder once", "s / step, encoder every step",
             "time saved", "same output"],
            [[f"{r['lr']}x{r['lr']}", f"{r['hr']}x{r['hr']}", c.fmt(r["encoder_s"]), c.fmt(r["once_step_s"]),
              c.fmt(r["per_step_step_s"]), f"{100 * r['saving']:.0f}%", "yes" if r["identical_outputs"] else "NO"]
             for r in rows],
        )
        + f"\nCommand: `{c.command_line()}`\n"
    )
    c.write_results(args, "encoder_once", data, md)


if __name__ == "__main__":
    main()
