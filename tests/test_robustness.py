"""Bad input never crashes srcli: a corpus of malformed files made here, random bytes and random
images through the loader (hypothesis), unwritable outputs, a full disk, and ``kill -9`` mid-batch."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from conftest import random_image
from srcli.cli import app
from srcli.imageio import ImageData, ImageReadError, read_image

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


noisy = random_image


def encoded(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def png_with_garbage_idat() -> bytes:
    """A PNG whose chunk structure and CRCs are valid but whose compressed pixels are noise."""
    png = encoded(noisy(32, 32))
    at = png.index(b"IDAT")
    length = struct.unpack(">I", png[at - 4 : at])[0]
    payload = png[at + 4 : at + 6] + bytes(np.random.default_rng(1).integers(0, 256, length - 2, dtype=np.uint8))
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + payload) & 0xFFFFFFFF)
    return png[: at + 4] + payload + crc + png[at + 8 + length :]


def build_corpus(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Write good and bad inputs; returns (bad name -> expected message part, good name -> warning part)."""
    folder.mkdir()
    Image.fromarray(noisy(16, 16)).save(folder / "good.png")
    Image.fromarray(noisy(12, 20, 1)).save(folder / "good2.jpg")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "one_pixel.png")
    Image.fromarray(noisy(10, 10)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.new("LAB", (10, 10), (180, 140, 110)).save(folder / "lab.tiff")
    Image.fromarray((np.arange(100).reshape(10, 10) * 600).astype(np.uint16)).save(folder / "gray16.png")
    frames = [Image.new("RGB", (10, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=40)
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=40, lossless=True)
    Image.new("RGB", (120, 100)).save(folder / "bomb.png")  # 12000 px; the test sets a 5000 px limit
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("definitely not a PNG\n")
    (folder / "truncated.png").write_bytes(encoded(noisy(64, 64))[:300])
    (folder / "truncated.jpg").write_bytes(encoded(noisy(64, 64), "JPEG")[:400])
    (folder / "corrupt.png").write_bytes(png_with_garbage_idat())
    Image.new("F", (6, 6), 0.25).save(folder / "float.tiff")
    bad = {
        "empty.png": "empty file",
        "text.png": "not a recognised image",
        "truncated.png": "truncated or corrupt",
        "truncated.jpg": "truncated or corrupt",
        "corrupt.png": "truncated or corrupt",
        "float.tiff": "unsupported image mode F",
        "bomb.png": "decompression bomb",
    }
    good = {
        "good.png": "", "good2.jpg": "", "one_pixel.png": "", "gray16.png": "",
        "cmyk.jpg": "CMYK image converted", "lab.tiff": "LAB image converted",
        "anim.gif": "only the first", "anim.webp": "only the first",
    }
    return bad, good


def test_malformed_corpus_in_one_batch(tmp_path, tiny_checkpoint, monkeypatch):
    bad, good = build_corpus(tmp_path / "in")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    missing = tmp_path / "in" / "missing.png"
    result = runner.invoke(
        app,
        ["upscale", str(tmp_path / "in"), str(missing), "--scale", "2", "-o", str(tmp_path / "out"),
         "--weights", str(tiny_checkpoint), "--steps", "2", "--json"],
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = {**{str(tmp_path / "in" / n): m for n, m in bad.items()}, str(missing): "no such file"}
    assert len(errors) == len(expected)  # one line per bad input, no tracebacks
    assert "Traceback" not in result.output
    for path, message in expected.items():
        assert any(line.startswith(f"error: {path}: ") and message in line for line in errors), (path, errors)
    records = {r["input"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert len(records) == len(bad) + len(good) + 1
    for name, warning in good.items():
        record = records[str(tmp_path / "in" / name)]
        assert record["status"] == "ok", record
        assert warning in " ".join(record["warnings"])
        with Image.open(record["output"]) as out:
            out.load()
            assert out.size == tuple(record["size"])
    assert Image.open(tmp_path / "out" / "one_pixel_x2.png").size == (2, 2)
    with Image.open(tmp_path / "out" / "gray16_x2.png") as g16:
        assert g16.mode == "I;16"
    for path in expected:
        assert records[path]["status"] == "error" and records[path]["error"].startswith(f"{path}: ")


def test_pixel_limit_from_the_environment(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    Image.new("RGB", (50, 50)).save(tmp_path / "big.png")
    args = ["upscale", str(tmp_path / "big.png"), "--scale", "2", "--weights", str(tiny_checkpoint), "--steps", "1"]
    result = runner.invoke(app, args, env={"SRCLI_MAX_IMAGE_PIXELS": "1000"})
    assert result.exit_code == 1 and "decompression bomb" in result.stderr
    result = runner.invoke(app, args, env={"SRCLI_MAX_IMAGE_PIXELS": "lots"})
    assert result.exit_code == 2 and "SRCLI_MAX_IMAGE_PIXELS" in result.stderr


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory this process cannot create files in (root ignores permission bits: use /sys)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        yield Path("/sys")
        return
    os.close(fd)
    os.unlink(name)
    pytest.skip("no directory here is unwritable for root")


def test_unwritable_output_directory(tmp_path, tiny_checkpoint, unwritable_dir):
    for i in range(2):
        Image.fromarray(noisy(8, 8, i)).save(tmp_path / f"{i}.png")
    result = runner.invoke(
        app, ["upscale", str(tmp_path / "0.png"), str(tmp_path / "1.png"), "--scale", "2", "-o", str(unwritable_dir),
              "--weights", str(tiny_checkpoint), "--steps", "1"],
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("cannot write" in e and "Permission denied" in e for e in errors)


def test_full_disk_fails_one_file_and_the_rest_continue(tmp_path, tiny_checkpoint, monkeypatch):
    for name in ("a", "b", "c"):
        Image.fromarray(noisy(8, 8)).save(tmp_path / f"{name}.png")
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if ".b_x2.png." in str(fp):  # the temporary of b's output
            with open(fp, "wb") as f:
                f.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    result = runner.invoke(
        app, ["upscale", str(tmp_path), "--scale", "2", "-o", str(tmp_path / "out"), "--weights", str(tiny_checkpoint), "--steps", "1"]
    )
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'out' / 'b_x2.png'}: cannot write (No space left on device)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png", "c_x2.png"]  # no temporary left


# -- property tests: the loader returns a valid image or raises ImageReadError, nothing else -----------

MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*", b"BM"]
SUFFIXES = [".png", ".jpg", ".webp", ".tiff", ".bmp", ".gif"]


def check_loader(path: Path) -> ImageData | None:
    try:
        data = read_image(path)
    except ImageReadError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return None
    assert data.rgb.ndim == 3 and data.rgb.shape[2] == 3 and data.rgb.dtype in (np.uint8, np.uint16)
    assert data.alpha is None or data.alpha.shape == data.rgb.shape[:2]
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=1500), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_never_crash_the_loader(tmp_path, magic, body, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(magic + body)
    check_loader(path)


MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "CMYK", "F"]
FORMATS = ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(FORMATS),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    damage=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16))),
    seed=st.integers(0, 2**16),
)
def test_random_images_load_or_fail_cleanly(tmp_path, mode, fmt, size, damage, seed):
    rgb = Image.fromarray(noisy(size[1], size[0], seed))
    im = rgb.convert("I").point(lambda v: v * 200).convert("I;16") if mode == "I;16" else rgb.convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to read
    content = buf.getvalue()
    if damage is not None:  # overwrite some bytes at a random place
        at = int(damage[0] * len(content))
        content = content[:at] + damage[1] + content[at + len(damage[1]) :]
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(content)
    data = check_loader(path)
    if damage is None and mode != "F":  # an intact image always loads, at its size
        assert data is not None and data.size == (size[1], size[0])


# -- kill -9 in the middle of a batch, then rerun --------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_completes(tmp_path, tiny_checkpoint):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    names = [f"img{i}" for i in range(6)]
    for i, name in enumerate(names):
        Image.fromarray(noisy(32, 32, i)).save(src / f"{name}.png")
    cmd = [sys.executable, "-m", "srcli", "upscale", str(src), "--scale", "4", "-o", str(out), "--weights", str(tiny_checkpoint),
           "--steps", "8", "--tile", "64", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SRCLI_TEST_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        first = json.loads(proc.stdout.readline())  # blocks until the first output is on disk
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert first["status"] == "ok"
    done = sorted(out.glob("*.png"))
    assert 1 <= len(done) < len(names), "the kill must land mid-batch"
    for path in done:  # whatever was written is complete (atomic writes)
        with Image.open(path) as im:
            im.load()
    # what a kill during a write leaves behind: a temporary beside the output
    stale = out / f".{names[-1]}_x4.png.k1ll3d.tmp"
    stale.write_bytes(b"\x89PNG half")
    rerun = subprocess.run(cmd, capture_output=True, env=env, text=True, timeout=1800)  # a starved CI box is slow
    assert rerun.returncode == 0, rerun.stderr
    statuses = {Path(r["input"]).stem: r["status"] for r in map(json.loads, rerun.stdout.splitlines())}
    assert sorted(statuses) == names
    assert sum(s == "skipped" for s in statuses.values()) == len(done)
    for name in names:
        with Image.open(out / f"{name}_x4.png") as im:
            im.load()
            assert im.size == (128, 128)
    assert sorted(p.name for p in out.iterdir()) == [f"{n}_x4.png" for n in names]  # no temporaries
