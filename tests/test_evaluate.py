"""``srcli eval`` and the evaluation API: the protocol, the JSON, the files, the errors.

The bicubic baseline is checked against a reference of the protocol written here with numpy and
Pillow only (no srcli.metrics), so a mistake in srcli's metrics cannot hide in both."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_model
from srcli.checkpoint import save_checkpoint
from srcli.cli import app
from srcli.diffusion import NoiseSchedule
from srcli.evaluate import EvalReport, ImageResult, Scores, evaluate_folder, evaluate_images, protocol_pair
from srcli.pipeline import UsageError

runner = CliRunner()


# -- an independent implementation of docs/protocol.md --------------------------------------
def ref_y(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / 4.5)
    win = np.outer(g, g) / np.outer(g, g).sum()
    pa, pb = sliding_window_view(a, (11, 11)), sliding_window_view(b, (11, 11))
    ma, mb = (pa * win).sum((2, 3)), (pb * win).sum((2, 3))
    va, vb = (pa * pa * win).sum((2, 3)) - ma**2, (pb * pb * win).sum((2, 3)) - mb**2
    cov = (pa * pb * win).sum((2, 3)) - ma * mb
    c1, c2 = 6.5025, 58.5225
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))).mean())


def reference_bicubic(hr_full: np.ndarray, scale: int) -> dict[str, float]:
    h, w = hr_full.shape[:2]
    hr = hr_full[: h - h % scale, : w - w % scale]
    lr_size = (hr.shape[1] // scale, hr.shape[0] // scale)
    lr = Image.fromarray(hr).resize(lr_size, Image.BICUBIC)
    sr = np.asarray(lr.resize((hr.shape[1], hr.shape[0]), Image.BICUBIC))
    c = scale
    ysr, yhr = ref_y(sr)[c:-c, c:-c], ref_y(hr)[c:-c, c:-c]
    back = np.asarray(Image.fromarray(sr).resize(lr_size, Image.BICUBIC))
    return {"psnr_y": ref_psnr(ysr, yhr), "ssim_y": ref_ssim(ysr, yhr), "lr_psnr": ref_psnr(back, np.asarray(lr))}


# -- fixtures ------------------------------------------------------------------------------------
def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(x / 5.0 + seed)[..., None] * np.cos(y / 7.0)[..., None] + np.array([10, -5, 20])
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo_like(50, 61, 0)).save(folder / "a.png")
    Image.fromarray(photo_like(64, 64, 1)).save(folder / "sub" / "b.png")
    return folder


def run_eval(*args: str):
    result = runner.invoke(app, ["eval", *map(str, args)])
    return result


# -- protocol ------------------------------------------------------------------------------------
def test_protocol_pair_integer_scale_crops_to_a_multiple():
    hr, lr = protocol_pair(photo_like(50, 61, 0), 4)
    assert hr.shape == (48, 60, 3) and lr.shape == (12, 15, 3)
    np.testing.assert_array_equal(lr, np.asarray(Image.fromarray(hr).resize((15, 12), Image.BICUBIC)))


def test_protocol_pair_fractional_scale_matches_upscale_output_size():
    hr, lr = protocol_pair(photo_like(50, 61, 0), 2.5)
    assert lr.shape[:2] == (20, 24)
    assert hr.shape[:2] == (round(20 * 2.5), round(24 * 2.5))


def test_protocol_pair_rejects_tiny_images():
    with pytest.raises(ValueError, match="too small"):
        protocol_pair(photo_like(16, 16, 0), 4)


def test_bicubic_baseline_matches_independent_reference(hr_folder):
    report = evaluate_folder(hr_folder, None, scale=4, baselines=["bicubic"])
    assert [im.name for im in report.images] == ["a.png", "sub/b.png"]
    for im, path in zip(report.images, ["a.png", "sub/b.png"]):
        ref = reference_bicubic(np.asarray(Image.open(hr_folder / path).convert("RGB")), 4)
        got = im.scores["bicubic"]
        assert abs(got.psnr_y - ref["psnr_y"]) < 0.05
        assert abs(got.lr_psnr - ref["lr_psnr"]) < 0.05
        assert abs(got.ssim_y - ref["ssim_y"]) < 1e-4


def test_json_replaces_infinite_psnr_with_null():
    report = EvalReport({"scale": 4})
    report.images.append(ImageResult("x", (8, 8), (2, 2), {"bicubic": Scores(math.inf, 1.0, math.inf, 0.0)}))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["images"][0]["scores"]["bicubic"]["psnr_y"] is None
    assert data["mean"]["bicubic"]["ssim_y"] == 1.0


def test_api_rejects_bad_arguments(hr_folder):
    with pytest.raises(UsageError):
        evaluate_folder(hr_folder, None, scale=4, baselines=["nearest"])
    with pytest.raises(UsageError):
        evaluate_folder(hr_folder, None, scale=4, baselines=["encoder"])
    with pytest.raises(UsageError):
        evaluate_images([("x", photo_like(32, 32, 0))], None, scale=0.5)


# -- the command ---------------------------------------------------------------------------------
def test_eval_json_with_tiny_checkpoint(hr_folder, tiny_checkpoint):
    result = run_eval(hr_folder, "--scale", "4", "--weights", tiny_checkpoint, "--steps", "3", "--samples", "2",
                      "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["methods"] == ["bicubic", "lanczos", "srcli"]
    assert data["settings"]["scale"] == 4 and data["settings"]["samples"] == 2 and data["settings"]["border"] == 4
    assert len(data["images"]) == 2 and data["failed"] == []
    for im in data["images"]:
        srcli = im["scores"]["srcli"]
        assert srcli["sigma"] > 0  # different seeds give different samples
        assert im["scores"]["bicubic"]["sigma"] is None
        assert all(math.isfinite(srcli[k]) for k in ("psnr_y", "ssim_y", "lr_psnr", "seconds"))
    ref = reference_bicubic(np.asarray(Image.open(hr_folder / "a.png").convert("RGB")), 4)
    assert abs(data["images"][0]["scores"]["bicubic"]["psnr_y"] - ref["psnr_y"]) < 0.05
    mean = data["mean"]["bicubic"]["psnr_y"]
    assert mean == pytest.approx(np.mean([im["scores"]["bicubic"]["psnr_y"] for im in data["images"]]), abs=1e-3)  # rounded to 6 digits


def test_eval_table_and_saved_files_reproduce_upscale(hr_folder, tiny_checkpoint, tiny_pipeline, tmp_path):
    out = tmp_path / "out"
    result = run_eval(hr_folder, "--weights", tiny_checkpoint, "--steps", "2", "--seed", "5", "--device", "cpu",
                      "--save-dir", out, "--baselines", "bicubic")
    assert result.exit_code == 0, result.output
    assert "mean (2)" in result.stdout and "bicubic" in result.stdout and "lanczos" not in result.stdout
    assert (out / "a_compare.png").is_file() and (out / "sub__b_compare.png").is_file()
    saved = np.asarray(Image.open(out / "a_srcli.png"))
    _, lr = protocol_pair(np.asarray(Image.open(hr_folder / "a.png").convert("RGB")), 4)
    again = np.asarray(tiny_pipeline.upscale(lr, scale=4, steps=2, seed=5))
    np.testing.assert_array_equal(saved, again)


def test_eval_fractional_scale_and_encoder_baseline(hr_folder, tiny_checkpoint):
    result = run_eval(hr_folder, "--scale", "2.5", "--weights", tiny_checkpoint, "--steps", "2", "--device", "cpu",
                      "--baselines", "bicubic,encoder", "--limit", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["methods"] == ["bicubic", "encoder", "srcli"]
    assert data["images"][0]["hr_size"] == [60, 50] and data["images"][0]["lr_size"] == [24, 20]


def test_eval_tiled_matches_untiled_closely(hr_folder, tiny_checkpoint):
    def psnr_of(*extra: str) -> float:
        result = run_eval(hr_folder, "--weights", tiny_checkpoint, "--steps", "2", "--device", "cpu", "--limit", "1",
                          "--baselines", "", "--json", *extra)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["methods"] == ["srcli"]
        return data["images"][0]["scores"]["srcli"]["psnr_y"]

    # the noise is tied to HR positions, so tiles change only what the network sees near tile borders
    assert abs(psnr_of("--tile", "32") - psnr_of("--tile", "0")) < 1.0


def test_unreadable_image_is_reported_and_others_go_on(hr_folder, tiny_checkpoint):
    (hr_folder / "broken.png").write_text("not an image")
    result = run_eval(hr_folder, "--weights", tiny_checkpoint, "--steps", "1", "--device", "cpu", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [f["name"] for f in data["failed"]] == ["broken.png"]
    assert len(data["images"]) == 2
    assert "skipped broken.png" in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--scale", "0.5"], "scale"),
        (["--steps", "0"], "steps must be"),
        (["--samples", "0"], "--samples"),
        (["--baselines", "bicubic,nearest"], "unknown baseline"),
        (["--sampler", "euler"], "unknown sampler"),
        (["--strength", "0"], "strength"),
        (["--tile", "5"], "tile"),
        (["--limit", "0"], "--limit"),
        (["--weights", "no-such-weights"], "no such weights"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(hr_folder, tiny_checkpoint, args, message):
    base = [hr_folder] if "--weights" in args else [hr_folder, "--weights", tiny_checkpoint]
    result = run_eval(*base, "--device", "cpu", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_fixed_scale_checkpoint_is_evaluated_at_its_scale_only(hr_folder, tmp_path):
    model = tiny_model(projection="transposed", scale=2)
    path = tmp_path / "fixed2.safetensors"
    save_checkpoint(path, model, NoiseSchedule.named("cosine", model.config.timesteps))
    result = run_eval(hr_folder, "--weights", path, "--steps", "2", "--device", "cpu", "--scale", "3")
    assert result.exit_code == 2 and "fixed to 2x" in result.stderr
    result = run_eval(hr_folder, "--weights", path, "--steps", "2", "--device", "cpu", "--scale", "2", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["images"]) == 2


def test_missing_or_empty_folder_exits_2(tmp_path, tiny_checkpoint):
    assert run_eval(tmp_path / "nope", "--weights", tiny_checkpoint).exit_code == 2
    (tmp_path / "empty").mkdir()
    result = run_eval(tmp_path / "empty", "--weights", tiny_checkpoint, "--device", "cpu")
    assert result.exit_code == 2 and "no images" in result.stderr


def test_help_has_examples():
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "srcli eval data/val --scale 4" in result.stdout


def test_lr_psnr_mean_stays_finite_when_one_image_is_exact():
    from srcli.evaluate import pooled_psnr

    assert pooled_psnr([float("inf"), 40.0]) == pytest.approx(40.0 + 10 * np.log10(2))
    assert pooled_psnr([30.0, 30.0]) == pytest.approx(30.0) and pooled_psnr([float("inf")]) == float("inf")
