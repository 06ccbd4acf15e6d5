"""The README's side-by-side of real-world inputs: degraded LR (srcli.degrade, seeded), bicubic,
the clean model, the real model and the clean HR, on crops of the validation split.

    python3 scripts/real_comparison.py [--val data/val] [--out docs/examples]

Writes real_comparison.jpg (quality 90) and lr_degraded.png (the first crop's degraded LR input,
the README's `--model real` example).  Deterministic: fixed seeds, CPU, fp32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from srcli.evaluate import interpolate, protocol_pair  # noqa: E402
from srcli.render import labelled_grid  # noqa: E402
from srcli.imageio import load_rgb8  # noqa: E402
from srcli.pipeline import SRPipeline  # noqa: E402

CROPS = ("Path_0.png", "YellowFlower_1.png", "Storm_0.png")
SCALE = 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val", type=Path, default=ROOT / "data" / "val")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "examples")
    p.add_argument("--degradation-seed", type=int, default=0)
    args = p.parse_args()
    models = {name: SRPipeline.from_pretrained(model=name, device="cpu", precision="fp32") for name in ("clean", "real")}
    tiles = []
    for i, name in enumerate(CROPS):
        hr, lr = protocol_pair(load_rgb8(args.val / name), SCALE, "real", args.degradation_seed, name)
        if i == 0:
            Image.fromarray(lr).save(args.out / "lr_degraded.png")
        size = (hr.shape[1], hr.shape[0])
        outs = {
            f"LR input ({name})": np.asarray(Image.fromarray(lr).resize(size, Image.NEAREST)),
            "bicubic": interpolate(lr, size, "bicubic"),
            "clean model": np.asarray(models["clean"].upscale(lr, scale=SCALE, seed=0)),
            "real model": np.asarray(models["real"].upscale(lr, scale=SCALE, seed=0)),
            "HR": hr,
        }
        tiles += list(outs.items())
    grid = labelled_grid(tiles, columns=5, max_tile=256)
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out / "real_comparison.jpg", quality=90)
    print(f"wrote {args.out / 'real_comparison.jpg'} and {args.out / 'lr_degraded.png'}")


if __name__ == "__main__":
    main()
