"""One precision switch: fp16 and bf16 weights run every command on the CPU (the exact code path CUDA
runs) and stay close to fp32 on the same seed, while image-space tensors stay float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import gradient_image, tiny_model
from srcli import device, explore
from srcli.cli import app
from srcli.diffusion import NoiseSchedule
from srcli.evaluate import evaluate_images
from srcli.imageio import ImageData
from srcli.ops import array_to_tensor, resize
from srcli.pipeline import SRPipeline

NATIVE_BF16 = device.cpu_has_native_bf16  # the real detection (imported before conftest pins it)
FLOORS = {"fp16": 40.0, "bf16": 35.0}  # PSNR (dB) of a half-precision result against fp32


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    peak = 65535.0 if a.dtype == np.uint16 else 255.0
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def make_pipe(precision: str) -> SRPipeline:
    model = tiny_model()
    return SRPipeline(model, NoiseSchedule.named("cosine", model.config.timesteps), device="cpu", precision=precision)


photo = gradient_image  # its defaults: slopes 9, 11, 4 and grain 25


def gradient16(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 1500 + y * 900 + 7, x * 700 + 300, y * 2000 + 11], axis=-1).astype(np.uint16)


# each run maps a pipeline to the list of images it produces
RUNS = {
    "untiled": lambda p: [np.asarray(p.upscale(photo(20, 24), scale=4, steps=6, tile=0, strength=1.0))],
    "tiled": lambda p: [np.asarray(p.upscale(photo(20, 24), scale=4, steps=6, tile=48))],
    "cascade": lambda p: [np.asarray(p.upscale(photo(10, 12), scale=8, steps=6, tile=0))],
    "16-bit": lambda p: [p.upscale_image(ImageData(gradient16(16, 20)), scale=2, steps=6, tile=0).rgb],
    "sample-diverse": lambda p: explore.sample_diverse(p, photo(12, 12), n=2, scale=4, steps=6, output="numpy").samples,
    "interpolate": lambda p: explore.latent_interpolation(p, photo(12, 12), t=10, lambdas=[0, 0.5, 1], steps=6, output="numpy").images,
    "fuse": lambda p: explore.content_fusion(p, photo(48, 48, 1), photo(48, 48, 2), t=[5, 12], steps=6, output="numpy").images,
    "eval": lambda p: _eval_outputs(p),
}


def _eval_outputs(pipe: SRPipeline) -> list[np.ndarray]:
    outputs = []
    evaluate_images(
        [("a", photo(48, 48, 3))], pipe, scale=4, steps=6, baselines=(),
        on_output=lambda name, method, out, hr: outputs.append(out),
    )
    return outputs


@pytest.fixture(scope="module")
def pipes() -> dict[str, SRPipeline]:
    return {p: make_pipe(p) for p in ("fp32", "fp16", "bf16")}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("run", list(RUNS))
def test_half_precision_matches_fp32(pipes, run, precision):
    ref = RUNS[run](pipes["fp32"])
    out = RUNS[run](pipes[precision])
    assert pipes[precision].model.denoise_fn.dtype == getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[precision])
    assert len(out) == len(ref) >= 1
    for a, b in zip(out, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert psnr(a, b) >= FLOORS[precision], f"{run} in {precision}: {psnr(a, b):.1f} dB from fp32"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_image_space_stays_float32(pipes, precision):
    """x_L and up(x_L) are float32 (16-bit inputs keep their 65536 levels); the networks take the
    float32 residual, run in half precision and hand back float32."""
    pipe = pipes[precision]
    x = pipe.to_input(gradient16(16, 20))
    assert x.dtype == torch.float32
    cond = pipe.condition(x, (32, 40))
    assert cond.x_up.dtype == torch.float32 and torch.equal(cond.x_up, resize(array_to_tensor(gradient16(16, 20)), (32, 40)))
    assert cond.cond_hr.dtype == pipe.dtype
    with pipe.inference():
        eps = cond.eps_fn()(torch.zeros(1, 3, 32, 40), torch.tensor([3]))
        regression = cond.start_residual("encoder")
    assert eps.dtype == torch.float32 and regression.dtype == torch.float32 and bool(torch.isfinite(eps).all())


def test_cli_fp16_on_the_cpu(tiny_checkpoint, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(photo(16, 16)).save(src)
    outs = {}
    for precision in ("fp32", "fp16"):
        out = tmp_path / f"{precision}.png"
        result = CliRunner().invoke(
            app, ["upscale", str(src), "-o", str(out), "--weights", str(tiny_checkpoint), "--scale", "2",
                  "--steps", "4", "--device", "cpu", "--precision", precision],
        )
        assert result.exit_code == 0, result.output
        outs[precision] = np.asarray(Image.open(out))
    assert psnr(outs["fp16"], outs["fp32"]) >= FLOORS["fp16"]


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "avx512f"}, torch.float32), ({"avx2", "avx512_bf16"}, torch.bfloat16), ({"amx_bf16"}, torch.bfloat16), (set(), torch.float32)],
)
def test_auto_precision_follows_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(device, "cpu_has_native_bf16", NATIVE_BF16)  # undo conftest's pin
    monkeypatch.setattr(device, "cpu_flags", lambda path="/proc/cpuinfo": flags)
    assert device.resolve_precision("auto", torch.device("cpu")) == expected
    assert device.resolve_precision("fp32", torch.device("cpu")) == torch.float32


def test_cpu_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert device.cpu_flags(str(info)) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert device.cpu_flags(str(tmp_path / "missing")) == set()
