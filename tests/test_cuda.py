"""The CUDA-only checks (marker ``cuda``, skipped without a GPU; ``scripts/gpu_check.sh`` runs them):
fp16 and bf16 upscales on the GPU against fp32 on the CPU, position-keyed noise identical on the CPU
and the GPU, and training steps on the GPU.  Run them alone with ``pytest -m cuda``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import gradient_image, tiny_config, tiny_model
from srcli.diffusion import NoiseSchedule
from srcli.pipeline import SRPipeline
from srcli.noise import field_noise, noise_window

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FLOORS = {"fp32": 45.0, "fp16": 40.0, "bf16": 35.0}  # PSNR (dB) against fp32 on the CPU, same seed


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def make_pipe(device: str, precision: str) -> SRPipeline:
    model = tiny_model()
    return SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device=device, precision=precision)


RUNS = {
    "untiled": dict(scale=4, steps=6, tile=0, strength=1.0),
    "tiled": dict(scale=4, steps=6, tile=48),
    "cascade": dict(scale=8, steps=6, tile=0),
}


@pytest.fixture(scope="module")
def cpu_reference() -> dict[str, np.ndarray]:
    pipe = make_pipe("cpu", "fp32")
    return {name: np.asarray(pipe.upscale(gradient_image(20, 24), seed=3, **kw)) for name, kw in RUNS.items()}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_upscale_on_cuda_matches_cpu_fp32(cpu_reference, run, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    pipe = make_pipe("cuda", precision)
    assert pipe.model.denoise_fn.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    out = np.asarray(pipe.upscale(gradient_image(20, 24), seed=3, **RUNS[run]))
    ref = cpu_reference[run]
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert psnr(out, ref) >= FLOORS[precision], f"{run} {precision}: {psnr(out, ref):.1f} dB from the CPU's fp32"


def test_auto_precision_on_cuda_is_fp16():
    assert make_pipe("cuda", "auto").dtype == torch.float16


@pytest.mark.parametrize("seed, k, origin", [(0, 0, (0, 0)), (7, 3, (40, 96)), (2**62 + 5, 99, (1000, 13))])
def test_noise_is_the_same_on_cpu_and_cuda(seed, k, origin):
    """The integer hash is exact on both; only log/cos of Box-Muller may differ in the last bit."""
    cpu = noise_window(seed, k, 3, *origin, 70, 90, "cpu")
    gpu = noise_window(seed, k, 3, *origin, 70, 90, "cuda")
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape == (3, 70, 90)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
    assert 0.9 < float(cpu.std()) < 1.1


def test_field_noise_is_made_on_the_device_and_tile_invariant():
    noise = field_noise([11, 12], [(0, 0), (16, 32)])
    whole = field_noise([11])(2, torch.empty(1, 3, 64, 96, device="cuda"))
    batch = noise(2, torch.empty(2, 3, 32, 48, device="cuda", dtype=torch.float16))
    assert batch.device.type == "cuda" and batch.dtype == torch.float16
    torch.testing.assert_close(batch[0].float(), whole[0, :, :32, :48], rtol=1e-3, atol=1e-3)
    other = field_noise([12])(2, torch.empty(1, 3, 48, 80, device="cuda"))
    torch.testing.assert_close(batch[1].float(), other[0, :, 16:48, 32:80], rtol=1e-3, atol=1e-3)


def test_training_steps_on_cuda(tmp_path):
    from srcli.checkpoint import load_checkpoint
    from srcli.train import TrainConfig, Trainer

    data = tmp_path / "train"
    data.mkdir()
    for i in range(3):
        Image.fromarray(gradient_image(72, 80, seed=i)).save(data / f"p{i}.png")
    cfg = TrainConfig(
        data=str(data), out=str(tmp_path / "w.safetensors"), state_dir=str(tmp_path / "state"), encoder_steps=3,
        steps=4, batch=2, patch=24, save_every=2, val_every=1000, log_every=1, model=tiny_config(), seed=5,
    )
    trainer = Trainer(cfg, log=lambda m: None, device="cuda")
    assert next(trainer.model.parameters()).device.type == "cuda"
    before = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert trainer.step == 7
    after = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the steps changed the weights
    model, _, info = load_checkpoint(cfg.out)
    assert info["diffusion_steps_done"] == 4
    # the trained file runs on the CPU
    pipe = SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device="cpu", precision="fp32")
    assert np.asarray(pipe.upscale(gradient_image(12, 12), scale=2, steps=2)).shape == (24, 24, 3)
