"""The data recipe (`srcli prepare-data`): the fixed train / val / tune split, built from stand-in
Debian packages so the test needs no network; and the rule that turns the tuning sweep into defaults."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from srcli.data import PACKAGE_OF_PREFIX, PACKAGES, PHOTOS, VALIDATION, prepare_dataset, textured_crops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from strength_sweep import FIDELITY_FLOOR_DB, suggest  # noqa: E402


def textured_photo(seed: int, size: tuple[int, int] = (768, 1024)) -> np.ndarray:
    """Smooth noise whose texture varies over the frame, so the crops have a clear order."""
    rng = np.random.default_rng(seed)
    h, w = size
    ramp = np.linspace(0.1, 1.0, w)[None, :, None]
    return (128 + 100 * ramp * rng.standard_normal((h, w, 3))).clip(0, 255).astype(np.uint8)


def test_textured_crops_disjoint_and_stable_as_count_grows():
    img = textured_photo(0)
    two, four = textured_crops(img, 256, 2), textured_crops(img, 256, 4)
    assert four[:2] == two  # cutting tuning crops does not move the validation crops
    assert len(set(four)) == 4
    for i, (y, x) in enumerate(four):
        for cy, cx in four[:i]:
            assert abs(y - cy) >= 256 or abs(x - cx) >= 256  # no shared pixel


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_prepare_dataset_splits_from_stand_in_packages(tmp_path):
    # where each photo lives, by package: mate's nature/ folder, plasma's wallpaper packages, opencv-doc
    roots = {pkg: tmp_path / pkg for pkg in PACKAGES}
    for i, rel in enumerate(PHOTOS):
        root = next(roots[pkg] for prefix, pkg in PACKAGE_OF_PREFIX.items() if rel.startswith(prefix))
        if rel.endswith((".jpg", ".png")):
            target = root / rel
        else:  # a plasma wallpaper package: the largest of its images is the photo
            target = root / rel / "contents" / "images" / "1024x768.jpg"
            small = target.with_name("100x100.jpg")
            small.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(textured_photo(1000 + i, (100, 100))).save(small)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(textured_photo(i)).save(target, quality=95)
    debs = tmp_path / "debs"
    debs.mkdir()
    for pkg, root in roots.items():
        (root / "DEBIAN").mkdir()
        (root / "DEBIAN" / "control").write_text(
            f"Package: {pkg}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: stand-in\n")
        subprocess.run(["dpkg-deb", "--build", "-Znone", str(root), str(debs / f"{pkg}_1.0_all.deb")],
                       check=True, capture_output=True)

    out = tmp_path / "data"
    summary = prepare_dataset(out, debs, log=lambda m: None)
    held_out = len(VALIDATION)
    assert len(summary["train"]) == len(PHOTOS) - held_out
    assert sorted(p.name for p in (out / "val").iterdir()) == sorted(summary["val"]) and len(summary["val"]) == 2 * held_out
    assert sorted(p.name for p in (out / "tune").iterdir()) == sorted(summary["tune"]) and len(summary["tune"]) == 2 * held_out
    assert not {Path(n).stem for n in summary["train"]} & VALIDATION  # held-out photos never train
    # the plasma packages give their largest image
    assert Image.open(out / "train" / "Kite.jpg").size == (1024, 768)  # (w, h)
    # val and tune crops of a photo are different pixels of it
    val = {np.asarray(Image.open(p)).tobytes() for p in (out / "val").iterdir()}
    tune = {np.asarray(Image.open(p)).tobytes() for p in (out / "tune").iterdir()}
    assert len(val) == len(tune) == 2 * held_out and not val & tune


def rows(psnr: dict[float, float], detail: dict[float, float], bicubic: float,
         val: Optional[dict[float, float]] = None, val_bicubic: float = 0.0) -> list[dict]:
    """Sweep rows as strength_sweep.main makes them: the validation margin only where the tuning
    margin keeps the floor."""
    out = []
    for s in psnr:
        margins = {"tune": psnr[s] - bicubic}
        if val is not None and margins["tune"] >= FIDELITY_FLOOR_DB:
            margins["val"] = val[s] - val_bicubic
        out.append({"strength": s, "psnr_y": psnr[s], "detail": detail[s], "margins": margins})
    return out


# the 4x rows of the sweep on 5 validation crops of 2026-11-24 (bicubic 30.13 dB, detail 0.28)
PSNR_4X = {0.1: 32.04, 0.2: 31.82, 0.3: 31.61, 0.4: 31.40, 0.6: 31.02, 0.8: 30.77, 1.0: 30.68}
DETAIL_4X = {0.1: 0.50, 0.2: 0.53, 0.3: 0.55, 0.4: 0.57, 0.6: 0.61, 0.8: 0.63, 1.0: 0.64}


def test_strength_rule_keeps_the_fidelity_floor():
    # 0.6 recovers 90% of full strength's detail but is under bicubic + 1 dB: the most detailed
    # strength above the floor wins
    assert FIDELITY_FLOOR_DB == 1.0
    assert suggest(rows(PSNR_4X, DETAIL_4X, 30.13), 0.28) == 0.4
    # a lower floor (bicubic 1 dB lower) lets the detail rule choose, as before the floor
    assert suggest(rows(PSNR_4X, DETAIL_4X, 29.13), 0.28) == 0.6


def test_strength_rule_needs_the_floor_on_both_splits():
    # the tuning crops allow 0.6 (+1.21 dB) but the validation crops do not (+0.86): 0.4 wins;
    # 0.8 and 1 miss the floor on the tuning crops and are never run on the validation crops
    tune = {0.1: 34.71, 0.2: 34.54, 0.3: 34.37, 0.4: 34.19, 0.6: 33.82, 0.8: 33.59, 1.0: 33.52}
    detail = {0.1: 0.47, 0.2: 0.49, 0.3: 0.50, 0.4: 0.52, 0.6: 0.55, 0.8: 0.57, 1.0: 0.58}
    val = {0.1: 32.0, 0.2: 31.9, 0.3: 31.7, 0.4: 31.57, 0.6: 31.29, 0.8: 31.1, 1.0: 31.03}
    table = rows(tune, detail, 32.61, val, 30.43)
    assert "val" not in table[-1]["margins"] and "val" in table[0]["margins"]
    assert suggest(table, 0.29) == 0.4
    assert suggest(rows(tune, detail, 32.61), 0.29) == 0.6  # the tuning crops alone: the old choice


def test_strength_rule_without_a_faithful_strength_takes_the_best_psnr():
    assert suggest(rows(PSNR_4X, DETAIL_4X, 35.0), 0.28) == 0.1
    # nothing keeps the floor on the validation crops: the best tuning PSNR, not the floor's edge
    assert suggest(rows(PSNR_4X, DETAIL_4X, 30.13, PSNR_4X, 35.0), 0.28) == 0.1


def test_strength_rule_prefers_fewer_steps_on_a_tie():
    psnr = {0.1: 33.001, 0.2: 33.004, 1.0: 31.0}
    detail = {0.1: 0.7, 0.2: 0.7, 1.0: 0.71}
    assert suggest(rows(psnr, detail, 30.0), 0.3) == 0.1
