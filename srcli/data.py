"""Training data: random HR patches with LR made on the fly, and the reproducible data recipe.

The degradation is the protocol's (Pillow bicubic with antialiasing on 8-bit RGB; docs/protocol.md,
"Making the LR input") or, with ``degradation="real"``, the second-order real-world model of
:mod:`srcli.degrade`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .deblock import deblock
from .degrade import make_lr
from .imageio import ImageReadError, list_images, load_rgb8
from .ops import uint8_to_tensor


DEGRADATIONS = ("bicubic", "real")


@dataclass
class Batch:
    hr: torch.Tensor  # (B, 3, h, w) in [-1, 1]
    lr: torch.Tensor  # (B, 3, h/s, w/s) in [-1, 1]
    scale: float  # the exact ratio hr width / lr width


class PatchSampler:
    """Draws batches of (HR patch, bicubic-degraded LR patch) from a folder of HR images.

    One scale per batch (so tensors stack), drawn from [min_scale, max_scale]; half of the draws are
    the integer scales in that range.  All randomness comes from one numpy Generator whose state is
    part of the training checkpoint, so a resumed run sees the same data order.
    """

    def __init__(
        self,
        folder: str | Path,
        patch: int = 64,
        scales: tuple[float, float] = (2.0, 4.0),
        seed: int = 0,
        min_std: float = 4.0,
        log=print,
        degradation: str = "bicubic",
        clean_fraction: float = 0.0,
        deblock_lr: bool = False,
    ):
        if degradation not in DEGRADATIONS:
            raise ValueError(f"degradation {degradation!r}: expected one of {', '.join(DEGRADATIONS)}")
        if not 0.0 <= clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction {clean_fraction}: expected a share in [0, 1]")
        self.degradation = degradation
        self.clean_fraction = clean_fraction
        self.deblock_lr = deblock_lr
        self.images: list[np.ndarray] = []
        self.names: list[str] = []
        for path in list_images(folder):
            try:
                img = load_rgb8(path)
            except ImageReadError as exc:
                warnings.warn(f"skipping {exc}")
                log(f"warning: skipping {exc}")
                continue
            if min(img.shape[:2]) < patch:
                log(f"warning: skipping {path}: smaller than the {patch}px patch")
                continue
            self.images.append(img)
            self.names.append(path.name)
        if not self.images:
            raise ValueError(f"{folder}: no usable training images (need at least {patch}x{patch} pixels)")
        # draw images in proportion to the square root of their area: by area, the 15-megapixel
        # wallpapers would drown the half-megapixel photos that bring people, streets and objects
        sides = np.sqrt([im.shape[0] * im.shape[1] for im in self.images])
        self.weights = sides / sides.sum()
        self.patch = patch
        self.scales = (float(scales[0]), float(scales[1]))
        self.min_std = min_std
        self.rng = np.random.default_rng(seed)

    def draw_scale(self) -> float:
        lo, hi = self.scales
        integers = [s for s in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
        if integers and self.rng.random() < 0.5:
            return float(self.rng.choice(integers))
        return float(self.rng.uniform(lo, hi))

    def _crop(self, size: int) -> np.ndarray:
        for _ in range(4):  # prefer patches with some texture; flat bokeh teaches little
            img = self.images[self.rng.choice(len(self.images), p=self.weights)]
            y = int(self.rng.integers(0, img.shape[0] - size + 1))
            x = int(self.rng.integers(0, img.shape[1] - size + 1))
            crop = img[y : y + size, x : x + size]
            if crop.std() >= self.min_std:
                break
        k = int(self.rng.integers(0, 4))
        crop = np.rot90(crop, k)
        if self.rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)

    def batch(self, batch_size: int, scale: Optional[float] = None) -> Batch:
        scale = self.draw_scale() if scale is None else scale
        lr_size = max(4, round(self.patch / scale))
        hr_size = round(lr_size * scale)
        hrs, lrs = [], []
        for _ in range(batch_size):
            hr = self._crop(hr_size)
            hrs.append(uint8_to_tensor(hr))
            lrs.append(uint8_to_tensor(self.degrade(hr, (lr_size, lr_size))))
        return Batch(torch.cat(hrs), torch.cat(lrs), hr_size / lr_size)

    def degrade(self, hr: np.ndarray, lr_size: tuple[int, int]) -> np.ndarray:
        """HR patch -> LR patch; the real-world model draws from the sampler's generator (exact resume).
        A ``clean_fraction`` of the patches keeps the plain bicubic LR, so that a real-world model still
        sees clean inputs and learns to leave them sharp instead of treating every input as damaged.
        With ``deblock_lr`` the LR patch is JPEG deblocked (``srcli.deblock``) after it is made."""
        kind = self.degradation
        # no draw at all when the share is 0, so runs from before the option replay the same data
        if self.clean_fraction > 0 and self.rng.random() < self.clean_fraction:
            kind = "bicubic"
        lr = make_lr(hr, lr_size, kind, self.rng)
        # ``deblock_lr``: every LR patch as a model that deblocks its inputs will see it (clean ones too)
        return deblock(lr) if self.deblock_lr else lr

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def set_rng(self, rng: np.random.Generator) -> None:
        """Draw from ``rng`` from now on (the training stream gives every batch its own)."""
        self.rng = rng


# ------------------------------------------------------------------------------------------------
# The data recipe: photographs from Debian wallpaper packages, with a fixed validation split.

PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "opencv-doc")
# Which package holds a photo, by a path prefix of it.
PACKAGE_OF_PREFIX = {
    "usr/share/backgrounds/mate/": "mate-backgrounds",
    "usr/share/wallpapers/": "plasma-workspace-wallpapers",
    "usr/share/doc/opencv-doc/": "opencv-doc",
}
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
# (package-relative glob of the largest file, name) of every photograph used; artwork is left out.
PHOTOS = [
    *(f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
        "Storm", "TwoWings", "Wood", "YellowFlower")),
    *(f"usr/share/wallpapers/{n}" for n in (
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
        "Kite", "OneStandsOut", "Path", "summer_1am")),
    # OpenCV's sample photographs (training only): people, buildings, aerial views, fruit, fabric,
    # circuit boards.  Small and JPEG-compressed themselves, but varied where the wallpapers are
    # mostly nature; one view of each stereo or sequence pair, no renders, charts or paintings.
    *(f"{OPENCV_DATA}/{n}" for n in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
        "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg",
        "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg")),
]
VALIDATION = {"Storm", "YellowFlower", "EveningGlow", "Grey", "Path"}
VAL_CROP = 256
VAL_CROPS_PER_IMAGE = 2
# The next most textured crops of the held-out photos, disjoint from the validation crops: the
# split the sampling defaults are ranked on, and an independent check of the validation numbers.
TUNE_CROPS_PER_IMAGE = 2


def textured_crops(img: np.ndarray, size: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``count`` most textured non-overlapping crops on a half-crop grid
    (texture = mean absolute Laplacian of the luma).  Deterministic: the validation split is fixed,
    and it avoids the flat bokeh and sky that would make every method look alike."""
    gray = img.astype(np.float64).mean(axis=2)
    lap = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
    step = size // 2
    scored = []
    for y in range(0, img.shape[0] - size + 1, step):
        for x in range(0, img.shape[1] - size + 1, step):
            scored.append((float(lap[y : y + size - 2, x : x + size - 2].mean()), y, x))
    chosen: list[tuple[int, int]] = []
    for _, y, x in sorted(scored, reverse=True):
        if all(abs(y - cy) >= size or abs(x - cx) >= size for cy, cx in chosen):
            chosen.append((y, x))
        if len(chosen) == count:
            break
    return chosen


def _pixels(path: Path) -> int:
    with Image.open(path) as im:
        return im.size[0] * im.size[1]


def _largest_image(folder: Path) -> Path:
    files = [p for p in (folder / "contents" / "images").iterdir() if p.suffix.lower() in (".jpg", ".png")]
    return max(files, key=_pixels)


def prepare_dataset(out: str | Path, debs: Optional[str | Path] = None, log=print) -> dict:
    """Build ``out/train`` (full photographs), ``out/val`` (fixed 256px crops of held-out photos) and
    ``out/tune`` (further crops of the same held-out photos, no pixel shared with ``val``).

    ``debs`` is a folder holding the .deb files; without it they are fetched with ``apt-get download``.
    Returns a summary with the SHA-256 of every file written, so a user can check they got our data.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb_dir = Path(debs) if debs else tmp
        if not debs:
            log(f"downloading {', '.join(PACKAGES)} with apt-get download")
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True, capture_output=True)
        root = tmp / "root"
        for pkg in PACKAGES:
            matches = sorted(deb_dir.glob(f"{pkg}_*.deb"))
            if not matches:
                raise FileNotFoundError(f"{deb_dir}: no {pkg}_*.deb")
            subprocess.run(["dpkg", "-x", str(matches[-1]), str(root)], check=True)
        (out / "train").mkdir(parents=True, exist_ok=True)
        for split in ("val", "tune"):
            (out / split).mkdir(parents=True, exist_ok=True)
        summary: dict[str, dict[str, str]] = {"train": {}, "val": {}, "tune": {}}
        for rel in PHOTOS:
            src = root / rel
            name = src.stem if src.suffix else src.name
            if src.is_dir():
                src = _largest_image(src)
            if name in VALIDATION:
                img = load_rgb8(src)
                # one greedy pick: the first crops are the same as when only the validation ones are cut
                corners = textured_crops(img, VAL_CROP, VAL_CROPS_PER_IMAGE + TUNE_CROPS_PER_IMAGE)
                for i, (y, x) in enumerate(corners):
                    split, index = ("val", i) if i < VAL_CROPS_PER_IMAGE else ("tune", i - VAL_CROPS_PER_IMAGE)
                    dst = out / split / f"{name}_{index}.png"
                    Image.fromarray(img[y : y + VAL_CROP, x : x + VAL_CROP]).save(dst)
                    summary[split][dst.name] = hashlib.sha256(dst.read_bytes()).hexdigest()
            else:
                dst = out / "train" / f"{name}{src.suffix.lower()}"
                shutil.copyfile(src, dst)
                summary["train"][dst.name] = hashlib.sha256(dst.read_bytes()).hexdigest()
        log(f"wrote {len(summary['train'])} training photos, {len(summary['val'])} validation crops and "
            f"{len(summary['tune'])} tuning crops to {out}")
        return summary
