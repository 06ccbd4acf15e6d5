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


@pytest.fixture
def rgb_image():
    """A 24x20 textured RGB test image (uint8)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:20, 0:24]
    base = np.stack([x * 10, y * 12, (x + y) * 5], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
