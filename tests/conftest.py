"""Shared fixtures: tiny randomly initialised models, so most tests run in well under a second."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from srcli.checkpoint import save_checkpoint
from srcli.diffusion import NoiseSchedule
from srcli.nets import ModelConfig, SRDiffModel

torch.set_num_threads(int(os.environ.get("SRCLI_TEST_THREADS", "1")))

TINY = dict(unet_dim=8, unet_mults=(1, 2), rrdb_blocks=2, rrdb_nf=8, rrdb_gc=4, timesteps=20)


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides) -> SRDiffModel:
    torch.manual_seed(seed)
    model = SRDiffModel(tiny_config(**overrides))
    return model.eval()


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """Path to a tiny random scale-free srcli checkpoint (20 diffusion steps)."""
    model = tiny_model()
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, NoiseSchedule.named("cosine", model.config.timesteps), info={"test": True})
    return path


@pytest.fixture
def tiny_pipeline(tiny_checkpoint):
    from srcli.pipeline import SRPipeline

    return SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")


# -- test images (the one place they are made; files bind their own presets) --------------------


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 of independent uniform values: no structure at all."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient_image(
    h: int,
    w: int,
    seed: int = 0,
    slopes: tuple[float, float, float] = (9, 11, 4),
    offset: float | tuple[float, float, float] = 0.0,
    noise: float = 25.0,
    lo: int = 0,
    hi: int = 255,
) -> np.ndarray:
    """(h, w, 3) uint8: red rising along x, green along y, blue along the diagonal (``slopes`` grey
    levels per pixel, plus ``offset``), with Gaussian grain of std ``noise``, clipped to [lo, hi]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * slopes[0], y * slopes[1], (x + y) * slopes[2]], axis=-1).astype(np.float64) + offset
    return np.clip(base + rng.normal(0, noise, base.shape), lo, hi).astype(np.uint8)


@pytest.fixture
def rgb_image():
    """A 24x20 textured RGB test image (uint8)."""
    return gradient_image(20, 24, slopes=(10, 12, 5), noise=20)


@pytest.fixture(autouse=True)
def _auto_precision_is_fp32(monkeypatch):
    """Expected values are fp32's: on a CPU with native bf16 "auto" would pick bf16, so the tests
    pin it (tests/test_precision.py covers the detection and every precision explicitly)."""
    import srcli.device

    monkeypatch.setattr(srcli.device, "cpu_has_native_bf16", lambda: False)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A CLI test run in-process sets torch's thread count (``--threads``, or all cores by default)
    for the whole process; give later tests back the count they started with, so that a suite run
    with OMP_NUM_THREADS=1 beside another job does not oversubscribe the cores."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
