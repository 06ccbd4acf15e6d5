"""Where weights are found: shipped model names, the folder search order, hf:// names offline and
from the cache, and the package layout a wheel is built from."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srcli import weights
from srcli.checkpoint import CheckpointError
from srcli.cli import app
from srcli.pipeline import SRPipeline, UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_search_order_package_checkout_cwd_user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(weights.USER_DIR_ENV, str(tmp_path / "mine"))
    dirs = weights.search_dirs()
    assert dirs[0].parts[-2:] == ("srcli", "_weights")
    assert dirs[1:] == [ROOT / "weights", tmp_path / "weights", tmp_path / "mine"]


def test_user_folder_and_cwd_names_resolve_in_order(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "mine"
    monkeypatch.setenv(weights.USER_DIR_ENV, str(user))
    user.mkdir()
    shutil.copy(tiny_checkpoint, user / "x.safetensors")
    assert weights.resolve_weights("x") == user / "x.safetensors"
    (tmp_path / "weights").mkdir()
    shutil.copy(tiny_checkpoint, tmp_path / "weights" / "x.safetensors")
    assert weights.resolve_weights("x.safetensors") == tmp_path / "weights" / "x.safetensors"  # ./weights first


def test_missing_name_lists_every_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(weights.USER_DIR_ENV, str(tmp_path / "mine"))
    monkeypatch.setitem(weights.MODELS, "real", "srcli-nonexistent-test.safetensors")
    with pytest.raises(CheckpointError) as info:
        weights.resolve_weights(model="real")
    message = str(info.value)
    assert "\n" not in message and "srcli-nonexistent-test.safetensors" in message
    for folder in weights.search_dirs():
        assert str(folder) in message
    with pytest.raises(CheckpointError, match="no such weights file"):
        weights.resolve_weights(str(tmp_path / "sub" / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        weights.resolve_model("nope")


def test_default_is_the_clean_model():
    path = weights.resolve_weights()
    assert path.name == weights.MODELS["clean"] == "srcli-x2-4-c32.safetensors" and path.is_file()
    assert weights.resolve_weights(model="clean") == path


def test_model_and_weights_together_is_a_usage_error(tiny_checkpoint):
    with pytest.raises(UsageError, match="--model and --weights"):
        SRPipeline.from_pretrained(str(tiny_checkpoint), device="cpu", model="clean")
    result = CliRunner().invoke(app, ["upscale", "x.png", "--scale", "2", "--model", "clean", "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 2 and "--model and --weights" in result.output


def test_cli_missing_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(weights.MODELS, "real", "srcli-nonexistent-test.safetensors")
    src = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(src)
    result = CliRunner().invoke(app, ["upscale", str(src), "--scale", "2", "--model", "real"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "looked in" in lines[0], result.output


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("hf://o/r/f.safetensors", ("o/r", "f.safetensors", None)),
        ("hf://o/r/sub/f.safetensors@v1.2", ("o/r", "sub/f.safetensors", "v1.2")),
    ],
)
def test_parse_hub_name(spec, parsed):
    assert weights.parse_hub_name(spec) == parsed


@pytest.mark.parametrize("spec", ["hf://o/r", "hf://o//f", "hf://o/r/f@"])
def test_parse_hub_name_rejects(spec):
    with pytest.raises(CheckpointError, match="expected hf://OWNER/REPO/FILE"):
        weights.parse_hub_name(spec)


def test_hub_offline_fails_at_once_with_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "_hub_reachable", lambda endpoint: pytest.fail("offline must not touch the network"))
    with pytest.raises(CheckpointError) as info:
        weights.resolve_weights("hf://someone/repo/model.safetensors@v2")
    assert "HF_HUB_OFFLINE" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_hub_reachable", lambda endpoint: False)
    with pytest.raises(CheckpointError, match="cannot be reached"):
        weights.resolve_weights("hf://someone/repo/model.safetensors")


def test_hub_cache_is_used_first_with_revision(tmp_path, monkeypatch, tiny_checkpoint):
    """A file in huggingface_hub's cache layout loads without any network, at the revision asked."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--repo"
    for ref, commit in [("main", "a" * 40), ("v2", "b" * 40)]:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True)
        shutil.copy(tiny_checkpoint, repo / "snapshots" / commit / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(weights, "_hub_reachable", lambda endpoint: pytest.fail("a cached file needs no network"))
    assert weights.resolve_weights("hf://someone/repo/model.safetensors@v2").parent.name == "b" * 40
    assert weights.resolve_weights("hf://someone/repo/model.safetensors").parent.name == "a" * 40


def test_pyproject_packages_every_subpackage_and_the_weights():
    """The package list is explicit (pyproject maps weights/ into the package), so a new subpackage
    must be added to it; the shipped files must match its package-data patterns."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "srcli").rglob("__init__.py")
    }
    assert subpackages | {"srcli._weights"} == set(config["packages"])
    assert config["package-dir"]["srcli._weights"] == "weights"
    patterns = config["package-data"]["srcli._weights"]
    for name in weights.MODELS.values():
        assert any(Path(name).match(p) for p in patterns)
    assert any((ROOT / "weights").glob(patterns[0]))
