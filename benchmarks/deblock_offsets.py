"""Where the input's JPEG grid lies: the real model on real-world inputs cropped off their JPEG grid,
deblocked at the top-left grid (the rule before ``deblock.grid_offsets``) and where the grid is found.

    python3 benchmarks/deblock_offsets.py                 # 8 training photos, ~2 min on 2 cores
    python3 benchmarks/deblock_offsets.py --quick --weights tiny.safetensors

Each photo's centre 1024 px (``--region``) is degraded to a 256 px LR by the real-world pipeline
(``srcli.degrade``, as ``srcli eval --degradation real``: its JPEG grid starts at the top-left) and
cropped ``--offset`` rows and columns in, so the grid of the crop lies at offsets (8 - offset) % 8.
Then the real model upscales it 4x with the input deblocked at the top-left, at the offsets
``grid_offsets`` finds, or not at all.  Numbers: PSNR-Y against the matching HR crop and the block
grid (``srcli.metrics.block_grid``) read on the crop's true grid.  The photos come from the training
split of `srcli prepare-data` (the held-out split is 256 px crops, too small to search for a grid):
the model saw patches of them in training, which matters little for where the filter acts.
"""

from __future__ import annotations

import numpy as np

import _common as c

PHOTOS = ("Aqua.jpg", "Blinds.jpg", "BytheWater.jpg", "ColdRipple.jpg", "Dune.jpg", "FallenLeaf.jpg", "Garden.jpg", "Kite.jpg")


def main() -> None:
    p = c.parser(__doc__, splits=("train",))
    p.add_argument("--names", nargs="+", default=list(PHOTOS), help="photos in that folder")
    p.add_argument("--region", type=int, default=1024, help="HR px taken from each photo's centre (default 1024)")
    p.add_argument("--offset", type=int, default=3, help="LR px cropped off the top and left (default 3)")
    args = p.parse_args()
    threads = c.setup(args)
    from srcli.deblock import deblock, grid_offsets
    from srcli.evaluate import protocol_pair
    from srcli.imageio import load_rgb8
    from srcli.metrics import block_grid, psnr_y

    folder = c.split_folder(p, args, "train")
    region, names = (256, args.names[:2]) if args.quick else (args.region, args.names)
    pipe = c.load_pipeline(args, model="real", weights=args.weights)
    scale, off = 4, args.offset
    grid = (8 - off) % 8  # where the crop's grid lies, both axes
    variants = {"top-left": lambda lr: deblock(lr, offsets=(0, 0)), "found": deblock, "none": lambda lr: lr}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    found_by_photo = {}
    for name in names:
        photo = load_rgb8(folder / name)
        h, w = photo.shape[:2]
        r = min(region, h, w) // 32 * 32
        centre = photo[(h - r) // 2 : (h + r) // 2, (w - r) // 2 : (w + r) // 2]
        hr, lr = protocol_pair(centre, scale, "real", 0, name)
        side = lr.shape[0] - 8
        lr = np.ascontiguousarray(lr[off : off + side, off : off + side])
        hr = hr[scale * off : scale * (off + side), scale * off : scale * (off + side)]
        found_by_photo[name] = grid_offsets(lr)
        for key, prepare in variants.items():
            sr = np.asarray(pipe.upscale(prepare(lr), scale=scale, seed=0, deblock=False))
            results[key].append((psnr_y(sr, hr, scale), block_grid(sr[scale * grid :, scale * grid :], scale)))
        print(f"  {name}: grid found at {found_by_photo[name]} (true: {(grid, grid)})", flush=True)
    rows = [[key, f"{np.mean([v[0] for v in vals]):.2f}", f"{np.mean([v[1] for v in vals]):.3f}"] for key, vals in results.items()]
    hits = sum(o == grid for f in found_by_photo.values() for o in f)
    wrong = sum(o not in (0, grid) for f in found_by_photo.values() for o in f)
    info = c.machine_info(args)
    md = (f"### Deblocking inputs cropped off their JPEG grid: {len(names)} photos, 4x, real model, {c.run_label(pipe)}\n\n"
          + c.md_machine(info) + "\n"
          + c.md_table(["deblocked", "PSNR-Y (dB)", "block grid"], rows)
          + f"\nLR {side}x{side} cropped {off} px in (grid at offset {grid}); the grid was found on {hits} of "
          f"{2 * len(names)} axes, at a wrong offset on {wrong} (the rest keep the top-left).\n\n"
          f"Command: `{c.command_line()}`\n")
    c.write_results(args, "deblock_offsets", {"machine": info, "threads": threads, "offset": off, "found": found_by_photo,
                                              "rows": {k: v for k, v in results.items()}}, md)


if __name__ == "__main__":
    main()
