"""SamplingOptions checks itself once; the keyword fields of the API build the same object; the CLI's
option sets reach the library as one object."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import gradient_image
from srcli.cli import app
from srcli.errors import UsageError
from srcli.options import EXACT, SamplingOptions

runner = CliRunner()


@pytest.mark.parametrize("fields, message", [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": True}, "steps"), ({"sampler": "euler"}, "sampler"),
    ({"eta": -0.1}, "eta"), ({"eta": float("nan")}, "eta"), ({"temperature": float("inf")}, "temperature"),
    ({"temperature": -1}, "temperature"), ({"strength": 0}, "strength"), ({"strength": 1.5}, "strength"),
    ({"init": "lanczos"}, "init"), ({"consistency": -1}, "consistency"), ({"consistency": 1.0}, "consistency"),
])
def test_bad_values_are_usage_errors(fields, message):
    with pytest.raises(UsageError, match=message):
        SamplingOptions(**fields)


def test_values_are_normalised_and_frozen():
    opts = SamplingOptions(steps=np.int64(7), eta=np.float32(0.5), strength=1, init=None, consistency=np.int32(2))
    assert (opts.steps, opts.eta, opts.strength, opts.init, opts.consistency) == (7, 0.5, 1.0, "encoder", 2)
    assert type(opts.steps) is int and type(opts.strength) is float and type(opts.consistency) is int
    with pytest.raises(AttributeError):
        opts.steps = 3  # type: ignore[misc]


def test_keyword_fields_build_or_change_the_options():
    base = SamplingOptions(steps=10, sampler="ddim")
    assert SamplingOptions.of(None, steps=10, sampler="ddim") == base
    assert SamplingOptions.of(base) is base
    assert SamplingOptions.of(base, eta=1.0) == SamplingOptions(steps=10, sampler="ddim", eta=1.0)
    with pytest.raises(TypeError, match="unknown sampling option"):
        SamplingOptions.of(base, stpes=3)


@pytest.mark.parametrize("steps, T, t, expected", [(None, 100, 40, 40), (25, 100, 100, 25), (25, 100, 40, 10), (25, 100, 1, 1), (500, 100, 30, 30)])
def test_a_start_at_t_takes_its_share_of_the_steps(steps, T, t, expected):
    assert SamplingOptions(steps=steps).steps_from(T, t) == expected
    assert EXACT.steps_from(T, t) == t


def test_the_api_and_the_options_object_give_the_same_image(tiny_pipeline):
    img = gradient_image(12, 10)
    opts = SamplingOptions(steps=3, sampler="ddim", eta=0.5, strength=0.7, consistency=0)
    by_object = np.asarray(tiny_pipeline.upscale(img, scale=2, options=opts, seed=1))
    by_fields = np.asarray(tiny_pipeline.upscale(img, scale=2, steps=3, sampler="ddim", eta=0.5, strength=0.7, consistency=0, seed=1))
    other_eta = np.asarray(tiny_pipeline.upscale(img, scale=2, options=opts.replace(eta=0.0), seed=1))
    assert np.array_equal(by_object, by_fields) and not np.array_equal(by_object, other_eta)


@pytest.mark.parametrize("command", [["upscale"], ["sample-diverse"], ["interpolate"], ["fuse", "x.png"], ["eval"]])
def test_every_sampling_command_checks_the_options_in_one_line(command, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(gradient_image(8, 8)).save(image)
    target = [str(tmp_path)] if command == ["eval"] else [str(image)]
    result = runner.invoke(app, [command[0], *target, *command[1:], "--eta", "2"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "eta must be a number from 0 to 1" in lines[0]
