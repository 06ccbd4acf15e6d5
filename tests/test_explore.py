"""Diverse samples, latent interpolation (Alg. 4) and content fusion (Alg. 3): the API and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import random_image
from srcli import explore, render
from srcli.cli import app
from srcli.diffusion import reverse_process
from srcli.options import SamplingOptions
from srcli.metrics import diversity_sigma, sigma_map
from srcli.ops import tensor_to_uint8
from srcli.pipeline import UsageError

runner = CliRunner()
STEPS = 4  # reverse steps of a full run in these tests (T = 20 for the tiny model)


random_rgb = random_image


class EpsSpy:
    """Records the x_t of every U-Net call (the latent the reverse process works on)."""

    def __init__(self, pipe):
        self.inputs: list[torch.Tensor] = []
        self.handle = pipe.model.denoise_fn.register_forward_pre_hook(self.record)

    def record(self, module, args):
        self.inputs.append(args[0].detach().float().cpu().clone())

    def __enter__(self) -> "EpsSpy":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


# -- diverse samples -------------------------------------------------------------------------------
def test_samples_differ_across_seeds_and_repeat_under_one_seed(tiny_pipeline, rgb_image):
    a = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, seed=0, output="numpy")
    b = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, seed=0, output="numpy")
    assert a.seeds == [0, 1, 2]
    assert all(s.shape == (40, 48, 3) and s.dtype == np.uint8 for s in a.samples)
    assert all(np.array_equal(x, y) for x, y in zip(a.samples, b.samples))
    assert not np.array_equal(a.samples[0], a.samples[1]) and not np.array_equal(a.samples[1], a.samples[2])
    assert a.mean_sigma > 0 and a.mean_sigma == pytest.approx(diversity_sigma(a.samples))
    np.testing.assert_allclose(a.sigma_map, sigma_map(a.samples))


def test_sample_i_of_a_batch_equals_its_seed_alone(tiny_pipeline, rgb_image):
    batch = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, seed=5, output="numpy")
    alone = explore.sample_diverse(tiny_pipeline, rgb_image, n=1, scale=2, steps=STEPS, seed=6, output="numpy")
    upscaled = np.asarray(tiny_pipeline.upscale(rgb_image, scale=2, steps=STEPS, seed=6, tile=0, strength=explore.DIVERSE_STRENGTH))
    # batched convolutions may round differently in the last bit: allow one grey level
    assert np.abs(batch.samples[1].astype(int) - alone.samples[0]).max() <= 1
    assert np.abs(batch.samples[1].astype(int) - upscaled).max() <= 1
    assert alone.mean_sigma == 0.0


def test_the_samples_go_through_the_network_in_one_batch(tiny_pipeline, rgb_image):
    with EpsSpy(tiny_pipeline) as spy:
        explore.sample_diverse(tiny_pipeline, rgb_image, n=4, scale=2, steps=STEPS, output="numpy")
    assert len(spy.inputs) == STEPS and all(x.shape[0] == 4 for x in spy.inputs)


def test_sigma_is_zero_for_identical_images(tiny_pipeline, rgb_image):
    assert diversity_sigma([rgb_image] * 4) == 0.0
    assert not sigma_map([rgb_image] * 4).any()
    # no noise at all (temperature 0): every seed gives the same image, sigma 0 end to end
    same = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, temperature=0.0, output="numpy")
    assert same.mean_sigma == 0.0 and not same.sigma_map.any()
    # also from a Diff-SR start: the noise injected into the init image is scaled too
    partial = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, temperature=0.0, strength=0.5, output="numpy")
    assert partial.mean_sigma == 0.0


def test_rendering_of_sheet_and_heatmap(tiny_pipeline, rgb_image):
    res = explore.sample_diverse(tiny_pipeline, rgb_image, n=3, scale=2, steps=STEPS, output="numpy")
    sheet = render.contact_sheet(res)
    heat = render.heatmap(res.sigma_map, res.mean_sigma)
    assert sheet.dtype == np.uint8 and sheet.shape[1] > 5 * 48  # LR, bicubic and three samples in a row
    assert heat.shape[0] > 40 and heat.shape[1] >= 48  # the map plus a colour bar below it
    ramp = render.colorize(np.array([0.0, 1.0, 2.0]), 2.0)
    assert ramp[0].sum() < ramp[1].sum() < ramp[2].sum()  # darker = lower sigma


def test_sample_diverse_rejects_bad_arguments(tiny_pipeline, rgb_image):
    with pytest.raises(UsageError, match="n must be"):
        explore.sample_diverse(tiny_pipeline, rgb_image, n=0, output="numpy")
    with pytest.raises(UsageError, match="scale"):
        explore.sample_diverse(tiny_pipeline, rgb_image, n=2, scale=9, steps=STEPS, output="numpy")
    with pytest.raises(UsageError, match="steps must be"):
        explore.sample_diverse(tiny_pipeline, rgb_image, n=2, scale=2, steps=0, output="numpy")
    with pytest.raises(UsageError, match="sampler"):
        explore.sample_diverse(tiny_pipeline, rgb_image, n=2, scale=2, steps=STEPS, sampler="euler", output="numpy")


# -- Algorithm 4: latent interpolation -------------------------------------------------------------
def test_interpolation_endpoints_decode_from_exactly_the_endpoint_latents(tiny_pipeline, rgb_image):
    pipe, t = tiny_pipeline, 10
    pair = (random_rgb(40, 48, 1), random_rgb(40, 48, 2))
    with EpsSpy(pipe) as spy:
        res = explore.latent_interpolation(pipe, rgb_image, t=t, lambdas=[1.0, 0.4, 0.0], pair=pair, steps=STEPS, seed=3, output="numpy")

    # the first network call of the decode sees the mixes: lambda 1 is x_A, lambda 0 is x_B, bit for bit
    first = spy.inputs[0]
    assert first.shape[0] == 3
    assert torch.equal(first[0], res.latents[0]) and torch.equal(first[2], res.latents[1])
    torch.testing.assert_close(first[1], 0.4 * res.latents[0] + 0.6 * res.latents[1])

    # the endpoint latents are Eq. 4 applied to the two predictions with independent draws
    cond = pipe.condition(pipe.to_input(rgb_image), (40, 48))
    residuals = [cond.to_residual(pipe.to_input(img)) for img in pair]
    noise = pipe.noise([3])
    draws = [noise(0, residuals[0]), noise(1, residuals[0])]
    for i in range(2):
        expected = pipe.schedule.q_sample(residuals[i], t, draws[i])
        torch.testing.assert_close(res.latents[i : i + 1], expected, atol=1e-6, rtol=1e-6)

    # decoding the endpoint latent x_A alone (same step noise) gives the lambda = 1 image
    with torch.inference_mode():
        x0 = reverse_process(cond.eps_fn(), pipe.schedule, res.latents[:1], t, lambda k, like: noise(k + 1, like), SamplingOptions(steps=STEPS))
        direct = tensor_to_uint8(cond.to_image(x0))
    assert np.abs(direct.astype(int) - res.images[0]).max() <= 1


def test_interpolation_outputs_differ_only_by_their_latent(tiny_pipeline, rgb_image):
    kw = dict(t=8, seeds=(4, 9), scale=2, steps=STEPS, seed=1)
    many = explore.latent_interpolation(tiny_pipeline, rgb_image, lambdas=[0.0, 0.5, 1.0], **kw, output="numpy")
    one = explore.latent_interpolation(tiny_pipeline, rgb_image, lambdas=[1.0], **kw, output="numpy")
    again = explore.latent_interpolation(tiny_pipeline, rgb_image, lambdas=[0.0, 0.5, 1.0], **kw, output="numpy")
    assert many.seeds == (4, 9) and len(many.images) == 3
    assert all(np.array_equal(x, y) for x, y in zip(many.images, again.images))
    assert np.abs(many.images[2].astype(int) - one.images[0]).max() <= 1
    assert not np.array_equal(many.images[0], many.images[2])
    # the predictions A and B are what `upscale --seed` gives
    a = np.asarray(tiny_pipeline.upscale(rgb_image, scale=2, steps=STEPS, seed=4, tile=0, strength=1.0))
    assert np.abs(many.endpoints[0].astype(int) - a).max() <= 1
    assert render.interpolation_strip(many).shape[1] > 5 * 48


def test_interpolation_at_t0_returns_the_predictions(tiny_pipeline, rgb_image):
    res = explore.latent_interpolation(tiny_pipeline, rgb_image, t=0, lambdas=[0.0, 1.0], seeds=(2, 3), scale=2, steps=STEPS, output="numpy")
    assert np.abs(res.images[1].astype(int) - res.endpoints[0]).max() <= 1
    assert np.abs(res.images[0].astype(int) - res.endpoints[1]).max() <= 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(t=-1), "t must be"),
        (dict(t=21), r"t must be an integer in \[0, 20\]"),
        (dict(t=2.5), "t must be"),
        (dict(lambdas=[0.0, 1.5]), r"lambdas must lie in \[0, 1\]"),
        (dict(lambdas=[math.nan]), "lambdas must lie"),
        (dict(lambdas=[]), "at least one lambda"),
        (dict(seeds=(1, 2), pair=(random_rgb(40, 48, 0), random_rgb(40, 48, 1))), "either seeds or a pair"),
        (dict(pair=(random_rgb(40, 48, 0), random_rgb(40, 46, 1))), "differ in size"),
        (dict(pair=(random_rgb(48, 48, 0), random_rgb(48, 48, 1))), "aspect ratio"),
    ],
)
def test_interpolation_rejects_bad_arguments(tiny_pipeline, rgb_image, kwargs, message):
    with pytest.raises(UsageError, match=message):
        explore.latent_interpolation(tiny_pipeline, rgb_image, **{"t": 5, "steps": STEPS, **kwargs}, output="numpy")


# -- Algorithm 3: content fusion -------------------------------------------------------------------
@pytest.fixture
def sources():
    return random_rgb(32, 32, 10), random_rgb(32, 32, 11)


def outside(image: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.ones(image.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    return image[mask]


def test_fusion_changes_only_the_box(tiny_pipeline, sources):
    eyes, face = sources
    res = explore.content_fusion(tiny_pipeline, eyes, face, t=[0, 5, 20], scale=4, steps=STEPS, output="numpy")
    assert res.box == (5, 10, 27, 16)  # the default eye band: x 0.15-0.85, y 0.30-0.50 of 32x32
    x0, y0, x1, y1 = res.box
    for img in res.images:
        assert img.shape == face.shape
        assert np.array_equal(outside(img, res.box), outside(face, res.box))
    # t = 0: nothing to denoise, the box holds the pasted eye content exactly
    assert np.array_equal(res.images[0][y0:y1, x0:x1], eyes[y0:y1, x0:x1])
    assert np.array_equal(res.images[0], res.pasted)
    # from t = T the box is the model's, no longer the eye source
    assert not np.array_equal(res.images[2][y0:y1, x0:x1], eyes[y0:y1, x0:x1])


def test_fusion_custom_box_condition_and_one_draw_of_noise(tiny_pipeline, sources):
    pipe, (eyes, face), t = tiny_pipeline, sources, 12
    box = (2, 3, 20, 9)
    with EpsSpy(pipe) as spy:
        res = explore.content_fusion(pipe, eyes, face, t=t, box=box, scale=4, steps=STEPS, seed=7, output="numpy")
    assert res.box == box and res.lr.shape == (8, 8, 3)
    np.testing.assert_array_equal(res.lr, np.asarray(Image.fromarray(face).resize((8, 8), Image.BICUBIC)))
    assert np.array_equal(outside(res.images[0], box), outside(face, box))
    # x_t = sqrt(abar_t) x_r + sqrt(1 - abar_t) eps with x_r = x_f - up(x_L) of the paste, one draw
    cond = pipe.condition(pipe.to_input(res.lr), (32, 32))
    x_r = (pipe.to_input(res.pasted) - cond.x_up) * cond.rescale
    expected = pipe.schedule.q_sample(x_r, t, pipe.noise([7])(0, x_r))
    torch.testing.assert_close(spy.inputs[0], expected, atol=1e-5, rtol=1e-5)
    assert len(spy.inputs) == max(1, round(STEPS * t / pipe.schedule.T))


def test_fusion_strip_and_repeatability(tiny_pipeline, sources):
    eyes, face = sources
    a = explore.content_fusion(tiny_pipeline, eyes, face, t=[5, 10], scale=4, steps=STEPS, seed=1, output="numpy")
    b = explore.content_fusion(tiny_pipeline, eyes, face, t=[10], scale=4, steps=STEPS, seed=1, output="numpy")
    assert np.array_equal(a.images[1], b.images[0])  # every t starts from the same draw of noise
    strip = render.fusion_strip(a, eyes, face)
    assert strip.shape[1] > 5 * 32


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(t=-1), "t must be"),
        (dict(t=[10, 21]), "t must be"),
        (dict(box=(1, 2, 3)), "four integers"),
        (dict(box=(0, 0, 33, 10)), "inside the 32x32 image"),
        (dict(box=(10, 5, 10, 9)), "non-empty"),
        (dict(box=(-1, 5, 10, 9)), "inside"),
        (dict(scale=0.5), "scale"),
    ],
)
def test_fusion_rejects_bad_arguments(tiny_pipeline, sources, kwargs, message):
    eyes, face = sources
    with pytest.raises(UsageError, match=message):
        explore.content_fusion(tiny_pipeline, eyes, face, **{"scale": 4, "t": 5, "steps": STEPS, **kwargs}, output="numpy")


@pytest.mark.parametrize("consistency", [1, 5])
def test_fusion_refuses_back_projection(tiny_pipeline, sources, consistency):
    eyes, face = sources
    with pytest.raises(UsageError, match="no back-projection"):
        explore.content_fusion(tiny_pipeline, eyes, face, t=5, scale=4, steps=STEPS, consistency=consistency, output="numpy")
    # none or 0 is the algorithm's own output
    zero = explore.content_fusion(tiny_pipeline, eyes, face, t=5, scale=4, steps=STEPS, consistency=0, output="numpy")
    plain = explore.content_fusion(tiny_pipeline, eyes, face, t=5, scale=4, steps=STEPS, output="numpy")
    assert np.array_equal(zero.images[0], plain.images[0])


def test_fusion_needs_images_of_one_size(tiny_pipeline, sources):
    with pytest.raises(UsageError, match="one size"):
        explore.content_fusion(tiny_pipeline, sources[0], random_rgb(32, 30, 1), t=5, scale=4, steps=STEPS, output="numpy")


# -- the CLI ---------------------------------------------------------------------------------------
def save(path, array) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_sample_diverse_writes_samples_sheet_heatmap_and_sigma(tmp_path, tiny_checkpoint, rgb_image):
    src = save(tmp_path / "in.png", rgb_image)
    out = tmp_path / "out"
    result = invoke("sample-diverse", src, "--n", 3, "--scale", 2, "--steps", STEPS, "--seed", 4, "-o", out,
                    "--weights", tiny_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seed"] for r in records] == [4, 5, 6] and [r["output"] for r in records] == [str(out / f"in_seed{s}.png") for s in (4, 5, 6)]
    record = records[0]
    assert record["mean_sigma"] > 0
    assert record["strength"] == 1.0  # the full sampler unless told otherwise, whatever the scale
    for name in ("in_seed4.png", "in_seed5.png", "in_seed6.png", "in_sheet.png", "in_sigma.png"):
        assert (out / name).is_file()
    samples = [np.asarray(Image.open(out / f"in_seed{s}.png")) for s in (4, 5, 6)]
    assert record["mean_sigma"] == pytest.approx(diversity_sigma(samples), abs=1e-3)
    # the design card's short name works and is hidden from the command list
    alias = invoke("sample", src, "--n", 2, "--scale", 2, "--steps", STEPS, "-o", tmp_path / "b", "--weights", tiny_checkpoint)
    assert alias.exit_code == 0, alias.output
    assert "mean sigma" in alias.stdout
    listing = invoke("--help").stdout
    commands = [line.split()[1] for line in listing.splitlines() if line.startswith("│ ") and len(line.split()) > 1]
    assert "sample-diverse" in commands and "sample" not in commands


def test_cli_interpolate_and_fuse_write_their_outputs(tmp_path, tiny_checkpoint, rgb_image, sources):
    src = save(tmp_path / "in.png", rgb_image)
    result = invoke("interpolate", src, "--t", 6, "--lambdas", "0,0.4,1", "--seeds", "3,8", "--scale", 2,
                    "--steps", 50, "-o", tmp_path / "i", "--weights", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert "more than the model's T = 20" in result.stderr  # a warning, then T steps
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["in_lam0.4.png", "in_lam0.png", "in_lam1.png", "in_strip.png"]

    eyes, face = save(tmp_path / "eyes.png", sources[0]), save(tmp_path / "face.png", sources[1])
    out = tmp_path / "fused.png"
    result = invoke("fuse", eyes, face, "--t", 0, "--t", 5, "--scale", 4, "--steps", STEPS, "-o", out,
                    "--weights", tiny_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["t"] for r in records] == [0, 5] and records[-1]["strip"] == str(out)
    assert [r["steps"] for r in records][0] == 0 and [r["strength"] for r in records] == [0, 0.25]
    assert out.is_file()
    fused0 = np.asarray(Image.open(tmp_path / "fused_t0.png"))
    x0, y0, x1, y1 = records[0]["box"]
    assert np.array_equal(fused0[y0:y1, x0:x1], sources[0][y0:y1, x0:x1])
    assert np.array_equal(outside(fused0, (x0, y0, x1, y1)), outside(sources[1], (x0, y0, x1, y1)))


@pytest.mark.parametrize(
    "args,message",
    [
        (["interpolate", "{lr}", "--t", "21"], "t must be an integer in [0, 20]"),
        (["interpolate", "{lr}", "--t", "-3"], "t must be in [0, T]"),
        (["interpolate", "{lr}", "--lambdas", "0,x"], "expected comma-separated numbers"),
        (["interpolate", "{lr}", "--lambdas", "0,1.2"], "lambdas must lie in [0, 1]"),
        (["interpolate", "{lr}", "--lambdas", ""], "--lambdas"),
        (["interpolate", "{lr}", "--seeds", "1,2,3"], "expected two seeds"),
        (["interpolate", "{lr}", "--seeds", "1,2", "--pair", "{eyes}", "{face}"], "either --seeds or --pair"),
        (["fuse", "{eyes}", "{face}", "--t", "30"], "t must be an integer in [0, 20]"),
        (["fuse", "{eyes}", "{face}", "--box", "1,2,3"], "four integers"),
        (["fuse", "{eyes}", "{face}", "--box", "a,b,c,d"], "four integers"),
        (["fuse", "{eyes}", "{face}", "--box", "0,0,40,8"], "inside the 32x32 image"),
        (["fuse", "{eyes}", "{lr}"], "one size"),
        (["fuse", "{eyes}", "{face}", "--consistency", "3"], "content fusion has no back-projection"),
        (["fuse", "{eyes}", "{face}", "--consistency", "0"], "would force the box to downscale"),
        (["fuse", "{eyes}", "{face}", "-o", "{face}"], "would overwrite an input"),
        (["fuse", "{eyes}", "{face}", "-o", "{tmp}/fused.xyz"], "cannot tell the image format"),
        (["sample-diverse", "{lr}", "--n", "0"], "--n must be"),
        (["sample-diverse", "{tmp}/missing.png"], "no such file"),
        (["sample-diverse", "{lr}", "--sampler", "euler"], "sampler"),
    ],
)
def test_cli_usage_errors_are_one_line_and_exit_2(tmp_path, tiny_checkpoint, rgb_image, sources, args, message):
    files = {"lr": save(tmp_path / "lr.png", rgb_image), "eyes": save(tmp_path / "eyes.png", sources[0]),
             "face": save(tmp_path / "face.png", sources[1]), "tmp": str(tmp_path)}
    before = (tmp_path / "face.png").read_bytes()
    result = invoke(*[a.format(**files) for a in args], "--scale", 4, "--steps", STEPS, "--weights", tiny_checkpoint)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "face.png").read_bytes() == before


def test_cli_help_states_the_default_box_and_examples():
    result = invoke("fuse", "--help")
    assert result.exit_code == 0
    assert "0.15-0.85" in result.stdout and "0.30-0.50" in result.stdout and "Examples" in result.stdout
    assert "No --consistency" in result.stdout and "undoing the fusion" in result.stdout
    for command in ("sample-diverse", "interpolate"):
        assert "Examples" in invoke(command, "--help").stdout
