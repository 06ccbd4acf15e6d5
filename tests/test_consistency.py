"""--consistency: back-projection iterations, their default from the checkpoint's metadata, and the
option on every sampling command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_model
from srcli.checkpoint import save_checkpoint
from srcli.cli import app
from srcli.diffusion import NoiseSchedule
from srcli.options import DEFAULT_CONSISTENCY
from srcli.ops import resize
from srcli.pipeline import SRPipeline, UsageError

runner = CliRunner()


@pytest.fixture
def real_checkpoint(tmp_path):
    """A tiny checkpoint that says it was trained on real-world degradations."""
    model = tiny_model()
    path = tmp_path / "real.safetensors"
    save_checkpoint(path, model, NoiseSchedule.named("cosine", model.config.timesteps), info={"degradation": "real"})
    return path


def lr_error(pipe: SRPipeline, lr: np.ndarray, consistency) -> float:
    """Mean absolute difference (in [-1, 1] units) between the SR image downscaled and the input."""
    x_lr = pipe.to_input(lr)
    with torch.no_grad():
        sr = pipe.sr_tensor(x_lr, (2 * lr.shape[0], 2 * lr.shape[1]), [0], steps=3, consistency=consistency)
    return float((resize(sr, lr.shape[:2]) - x_lr).abs().mean())


def test_default_comes_from_the_checkpoint(tiny_pipeline, real_checkpoint):
    real = SRPipeline.from_pretrained(str(real_checkpoint), device="cpu")
    assert tiny_pipeline.default_consistency == DEFAULT_CONSISTENCY == 5 and real.default_consistency == 0
    assert {s.consistency for s in tiny_pipeline.passes(8)} == {5}
    assert {s.consistency for s in real.passes(8)} == {0}
    assert {s.consistency for s in real.passes(8, consistency=3)} == {3}


def test_back_projection_pulls_the_output_to_the_input(tiny_pipeline, rgb_image):
    lr = rgb_image[:16, :16]
    raw, projected = lr_error(tiny_pipeline, lr, 0), lr_error(tiny_pipeline, lr, 5)
    assert projected < raw / 3
    assert lr_error(tiny_pipeline, lr, None) == projected  # the default of a clean model is 5


def test_upscale_takes_consistency(tiny_pipeline, real_checkpoint, rgb_image):
    real = SRPipeline.from_pretrained(str(real_checkpoint), device="cpu")
    raw = np.asarray(real.upscale(rgb_image, scale=2, steps=2, tile=0))
    # the real model's defaults: no back-projection, and its input deblocked (tests/test_deblock.py)
    assert np.array_equal(raw, np.asarray(tiny_pipeline.upscale(rgb_image, scale=2, steps=2, tile=0, consistency=0, deblock=True)))
    assert not np.array_equal(raw, np.asarray(real.upscale(rgb_image, scale=2, steps=2, tile=0, consistency=5)))
    with pytest.raises(UsageError, match="consistency must be"):
        tiny_pipeline.upscale(rgb_image, scale=2, consistency=-1)


@pytest.mark.parametrize("command", [["upscale", "--scale", "2"], ["sample-diverse", "--n", "1"], ["interpolate"]])
def test_cli_rejects_negative_consistency(command, tmp_path, tiny_checkpoint):
    src = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(src)
    result = runner.invoke(app, [command[0], str(src), *command[1:], "--consistency", "-2", "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 2 and "consistency must be" in result.output


def test_cli_upscale_records_the_consistency_used(tmp_path, real_checkpoint):
    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    base = ["upscale", str(src), "--scale", "2", "--steps", "2", "--json", "--weights", str(real_checkpoint), "--overwrite"]
    record = json.loads(runner.invoke(app, base).stdout.splitlines()[-1])
    assert record["consistency"] == 0 and record["passes"][0]["consistency"] == 0
    record = json.loads(runner.invoke(app, [*base, "--consistency", "4"]).stdout.splitlines()[-1])
    assert record["consistency"] == 4
