"""srcli.imageio: every mode and format round-trips, metadata survives, failures are one clean line."""

from __future__ import annotations

import errno
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import gradient_image
from srcli.imageio import (
    ImageData, ImageReadError, ImageWriteError, is_complete_image, list_images, load_rgb8, read_image, resize_alpha,
    to_pil, write_image,
)

LOSSLESS = ["png", "tiff", "bmp"]
LOSSY = ["jpg", "webp"]
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def texture(h: int = 24, w: int = 32, seed: int = 0, noise: float = 10.0) -> np.ndarray:
    return gradient_image(h, w, seed, slopes=(7, 9, 4), noise=noise)


def gray16(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (x * 2011 + y * 977 + 3).astype(np.uint16)  # odd values: not representable in 8 bits


# -- reading each mode -----------------------------------------------------------------------------


def test_rgb_png(tmp_path):
    arr = texture()
    Image.fromarray(arr).save(tmp_path / "a.png")
    data = read_image(tmp_path / "a.png")
    assert data.rgb.dtype == np.uint8 and np.array_equal(data.rgb, arr)
    assert data.alpha is None and not data.grayscale and data.bits == 8 and data.warnings == []


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grayscale_modes(tmp_path, mode):
    im = Image.fromarray(texture()[..., 0]).convert(mode)
    im.save(tmp_path / "g.png")
    data = read_image(tmp_path / "g.png")
    assert data.grayscale and data.alpha is None
    assert np.array_equal(data.rgb[..., 0], np.asarray(im.convert("L")))
    assert np.array_equal(data.rgb[..., 0], data.rgb[..., 2])


def test_la_keeps_alpha(tmp_path):
    arr = texture()
    Image.merge("LA", (Image.fromarray(arr[..., 0]), Image.fromarray(arr[..., 1]))).save(tmp_path / "la.png")
    data = read_image(tmp_path / "la.png")
    assert data.grayscale and np.array_equal(data.alpha, arr[..., 1]) and np.array_equal(data.rgb[..., 1], arr[..., 0])


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.fromarray(texture()).quantize(16)
    im.save(tmp_path / "p.png")
    plain = read_image(tmp_path / "p.png")
    assert plain.alpha is None and np.array_equal(plain.rgb, np.asarray(im.convert("RGB")))
    im.info["transparency"] = 3
    im.save(tmp_path / "pt.png", transparency=3)
    clear = read_image(tmp_path / "pt.png")
    index = np.asarray(im)
    assert clear.alpha is not None
    assert np.array_equal(clear.alpha == 0, index == 3)


def test_rgba(tmp_path):
    arr = np.dstack([texture(), texture(seed=1)[..., 0]])
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    data = read_image(tmp_path / "a.png")
    assert np.array_equal(data.rgb, arr[..., :3]) and np.array_equal(data.alpha, arr[..., 3])


@pytest.mark.parametrize("suffix", ["png", "tiff"])
def test_sixteen_bit_grayscale(tmp_path, suffix):
    arr = gray16()
    Image.fromarray(arr).save(tmp_path / f"g.{suffix}")
    data = read_image(tmp_path / f"g.{suffix}")
    assert data.bits == 16 and data.grayscale and np.array_equal(data.rgb[..., 0], arr)


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_integer_modes(tmp_path, mode):
    arr = gray16()
    im = Image.fromarray(arr).convert("I") if mode == "I" else Image.frombytes(mode, (32, 24), arr.astype(">u2").tobytes())
    data = read_image(_save_tiff_or_png(im, tmp_path))
    assert data.bits == 16 and np.array_equal(data.rgb[..., 0], arr)


def _save_tiff_or_png(im: Image.Image, tmp_path):
    path = tmp_path / "x.tiff"
    try:
        im.save(path)
    except (OSError, ValueError):
        path = tmp_path / "x.png"
        im.save(path)
    return path


def test_sixteen_bit_rgb_is_read_at_8_bits_with_a_warning(tmp_path):
    """Pillow has no 16-bit RGB mode; srcli says so instead of pretending."""
    arr = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    data = read_image(tmp_path / "rgb16.png")
    assert data.bits == 8 and "16-bit RGB" in data.warnings[0]
    assert np.array_equal(data.rgb, (arr >> 8).astype(np.uint8))


def test_exif_orientation_applied(tmp_path):
    arr = texture(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif.tobytes())
    data = read_image(tmp_path / "o.png")
    assert data.size == (30, 20)
    assert np.array_equal(data.rgb, np.rot90(arr, k=-1))


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp", "tiff"])
def test_icc_profile_kept_through_read_and_write(tmp_path, suffix):
    Image.fromarray(texture()).save(tmp_path / f"in.{suffix}", icc_profile=SRGB_ICC)
    data = read_image(tmp_path / f"in.{suffix}")
    assert data.icc_profile == SRGB_ICC
    write_image(tmp_path / f"out.{suffix}", data)
    assert read_image(tmp_path / f"out.{suffix}").icc_profile == SRGB_ICC


def test_cmyk_and_lab_are_converted_with_a_warning(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=b"not a real profile")
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.icc_profile is None and "CMYK" in cmyk.warnings[0]
    assert tuple(cmyk.rgb[3, 3]) == pytest.approx((255, 0, 0), abs=3)
    Image.new("LAB", (8, 6), (255, 128, 128)).save(tmp_path / "l.tiff")
    lab = read_image(tmp_path / "l.tiff")
    assert "LAB" in lab.warnings[0] and lab.rgb.min() > 245  # L = 100: white


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    data = read_image(tmp_path / "a.gif")
    assert "first" in data.warnings[0] and tuple(data.rgb[0, 0]) == (255, 0, 0)


def test_float_mode_refused(tmp_path):
    Image.new("F", (4, 4), 0.5).save(tmp_path / "f.tiff")
    with pytest.raises(ImageReadError, match=r"f\.tiff: unsupported image mode F"):
        read_image(tmp_path / "f.tiff")


def test_one_pixel_image(tmp_path):
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    assert read_image(tmp_path / "one.png").rgb.tolist() == [[[1, 2, 3]]]


# -- writing each kind in each format -----------------------------------------------------------------


def _kinds() -> dict[str, ImageData]:
    rgb = texture(noise=3.0)  # mild noise: lossy formats (WebP is always 4:2:0) stay comparable
    alpha = texture(seed=2)[..., 0]
    g = np.repeat(rgb[..., :1], 3, axis=2)
    g16 = np.repeat(gray16()[..., None], 3, axis=2)
    return {
        "rgb": ImageData(rgb),
        "rgba": ImageData(rgb, alpha),
        "gray": ImageData(g, grayscale=True),
        "gray_alpha": ImageData(g, alpha, grayscale=True),
        "gray16": ImageData(g16, grayscale=True),
    }


@pytest.mark.parametrize("suffix", LOSSLESS + LOSSY)
@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray", "gray_alpha", "gray16"])
def test_write_then_read_round_trip(tmp_path, suffix, kind):
    data = _kinds()[kind]
    path = tmp_path / f"{kind}.{suffix}"
    warnings = write_image(path, data)
    back = read_image(path)
    assert back.size == data.size
    fmt_alpha = suffix in ("png", "tiff", "webp")
    fmt_gray = suffix != "webp"  # WebP stores RGB only
    sixteen = kind == "gray16" and suffix in ("png", "tiff")
    assert back.bits == (16 if sixteen else 8)
    assert back.grayscale == (data.grayscale and fmt_gray)
    if data.alpha is not None:
        assert (back.alpha is not None) == fmt_alpha
        assert (not fmt_alpha) == any("alpha dropped" in w for w in warnings)
        if fmt_alpha:
            assert np.array_equal(back.alpha, data.alpha)
    expected = data.rgb if sixteen or data.bits == 8 else np.rint(data.rgb / 257.0).astype(np.uint8)
    diff = np.abs(back.rgb.astype(np.int64) - expected.astype(np.int64))
    if suffix in LOSSLESS:
        assert diff.max() == 0
    else:
        assert diff.mean() < 3.0, diff.mean()  # quality 95


def test_write_is_atomic_and_reports_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_image(path, _kinds()["rgb"])
    before = path.read_bytes()

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(ImageWriteError) as info:
        write_image(path, _kinds()["gray"])
    assert str(info.value) == f"{path}: cannot write (No space left on device)"
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left


def test_write_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageWriteError, match="is not a directory"):
        write_image(tmp_path / "file" / "out.png", _kinds()["rgb"])
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "out.xyz", _kinds()["rgb"])


def test_to_pil_modes():
    kinds = _kinds()
    assert to_pil(kinds["rgb"])[0].mode == "RGB"
    assert to_pil(kinds["rgba"])[0].mode == "RGBA"
    assert to_pil(kinds["gray"])[0].mode == "L"
    assert to_pil(kinds["gray_alpha"])[0].mode == "LA"
    assert to_pil(kinds["gray16"])[0].mode == "I;16"
    im, warnings = to_pil(kinds["gray16"], "JPEG")
    assert im.mode == "L" and "8 bits" in warnings[0]


def test_is_complete_image(tmp_path):
    path = tmp_path / "o.png"
    assert not is_complete_image(path, (24, 32))
    write_image(path, _kinds()["rgb"])
    assert is_complete_image(path, (24, 32))
    assert not is_complete_image(path, (48, 64))
    path.write_bytes(path.read_bytes()[:-40])
    assert not is_complete_image(path, (24, 32))


def test_is_complete_image_above_the_bomb_limit(tmp_path, monkeypatch):
    write_image(tmp_path / "o.png", _kinds()["rgb"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert is_complete_image(tmp_path / "o.png", (24, 32))  # srcli's own output, not an input
    assert Image.MAX_IMAGE_PIXELS == 100


def test_resize_alpha():
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:, 4:] = 255
    big = resize_alpha(alpha, (32, 24))
    assert big.shape == (32, 24) and big.dtype == np.uint8
    assert big[:, :4].max() == 0 and big[:, -4:].min() == 255 and 0 < big[0, 12] < 255


def test_trainer_helpers_still_work(tmp_path):
    arr = texture()
    Image.fromarray(np.dstack([arr, arr[..., 0]]), "RGBA").save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(gray16()).save(tmp_path / "sub" / "b.png")
    (tmp_path / "notes.txt").write_text("x")
    assert np.array_equal(load_rgb8(tmp_path / "a.png"), arr)
    b = load_rgb8(tmp_path / "sub" / "b.png")
    assert b.dtype == np.uint8 and b.shape == (24, 32, 3)
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.png"]


# -- failures --------------------------------------------------------------------------------------


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture(64, 64)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("text.png", b"this is not an image\n", "not a recognised image"),
        ("truncated.png", _png_bytes()[:300], "truncated or corrupt"),
        ("header_only.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "truncated or corrupt|not a recognised"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(tmp_path / name)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / name}: ") and "\n" not in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: Pillow only warns here
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: Pillow's error
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(tmp_path / "bomb.png")
