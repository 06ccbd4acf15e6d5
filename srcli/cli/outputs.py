"""Where ``srcli upscale`` writes: output sizes (--scale, --width, --height), names, formats, and the
checks that no output replaces an input or another output."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..cascade import MAX_SCALE, MIN_SCALE, check_scale
from ..errors import UsageError
from ..imageio import FORMATS, image_size, output_format
from ..ops import scaled_size

FORMAT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tiff"}
_LOSSY = {"JPEG", "WEBP"}
DEFAULT_SCALE = 4.0


@dataclass(frozen=True)
class Target:
    """How big the outputs are: one factor for every image (``scale``) or one side in pixels
    (``width`` or ``height``), the other side following the image's aspect ratio."""

    scale: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None

    @classmethod
    def from_options(cls, scale: Optional[float], width: Optional[int], height: Optional[int]) -> "Target":
        given = [name for name, value in (("--scale", scale), ("--width", width), ("--height", height)) if value is not None]
        if len(given) > 1:
            raise UsageError(f"give one of --scale, --width or --height, not {' and '.join(given)}")
        for name, value in (("--width", width), ("--height", height)):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be a positive number of pixels, got {value}")
        if width is None and height is None:
            return cls(scale=check_scale(DEFAULT_SCALE if scale is None else scale))
        return cls(width=width, height=height)

    @property
    def label(self) -> str:
        """The part of an output's name that says how it was made: x4, x2.5, w1920, h1080."""
        if self.scale is not None:
            return f"x{self.scale:g}"
        return f"w{self.width}" if self.width is not None else f"h{self.height}"

    def scale_for(self, size: tuple[int, int]) -> float:
        """The factor for an image of ``size`` = (height, width); UsageError outside 1.5-8x."""
        if self.scale is not None:
            return self.scale
        side, have, name = (self.width, size[1], "width") if self.width is not None else (self.height, size[0], "height")
        factor = side / have
        if not MIN_SCALE <= factor <= MAX_SCALE:
            raise UsageError(
                f"--{name} {side} is {factor:.3g}x its {name} of {have} px; srcli upscales by {MIN_SCALE:g}x to {MAX_SCALE:g}x"
            )
        return factor


def output_name(src: Path, target: Target, suffix: Optional[str] = None) -> str:
    """NAME_x4.EXT; EXT is ``suffix`` (--format), else the input's when srcli writes that format, else .png."""
    if suffix is None:
        suffix = src.suffix if src.suffix.lower() in FORMATS else ".png"
    return f"{src.stem}_{target.label}{suffix}"


def plan_outputs(inputs: list[Path], output: Optional[str], target: Target, suffix: Optional[str] = None) -> list[Path]:
    """Where each input goes (raises ``UsageError`` for an impossible -o)."""
    if output is None:
        return [src.with_name(output_name(src, target, suffix)) for src in inputs]
    out = Path(output).expanduser()
    as_dir = out.is_dir() or output.endswith(("/", "\\")) or not out.suffix
    if not as_dir:
        if len(inputs) > 1:
            raise UsageError(f"-o {output}: several inputs need an output directory, not a file name")
        try:
            fmt = output_format(out)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if suffix is not None and fmt != FORMATS[suffix]:
            raise UsageError(f"-o {output} is a {fmt} file name but --format asks for {FORMATS[suffix]}; change one of them")
        return [out]
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {output}: exists and is not a directory")
    return [out / output_name(src, target, suffix) for src in inputs]


# NAME_x4, NAME_x2.5, NAME_w1920, NAME_h1080 (output_name)
_OUTPUT_STEM = re.compile(r"^(?P<stem>.+)_(?:x(?P<scale>\d+(?:\.\d+)?)|w(?P<width>\d+)|h(?P<height>\d+))$")


def _target_of(match: re.Match) -> Target:
    if match["scale"]:
        return Target(scale=float(match["scale"]))
    return Target(width=int(match["width"])) if match["width"] else Target(height=int(match["height"]))


def _made_from(size: tuple[int, int], source_size: Optional[tuple[int, int]], target: Target) -> bool:
    if source_size is None:
        return False
    try:
        return scaled_size(source_size, target.scale_for(source_size)) == size
    except UsageError:
        return False


def split_earlier_outputs(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(inputs to process, earlier outputs left out).  An earlier output is an input named like
    another input's default output at some scale or size, in any format srcli writes
    (``photo_x2.png`` or ``photo_w1920.jpg`` beside ``photo.png``, also on a rerun with other
    options), whose size is what that option makes of the other input: a user's own file that only
    shares the name is kept (and never overwritten: ``check_overwrites``)."""
    by_name = {(src.parent.resolve(), src.name): src for src in inputs}
    earlier: list[Path] = []
    for src in inputs:
        match = _OUTPUT_STEM.match(src.stem)
        if not match or src.suffix.lower() not in FORMATS:
            continue
        target = _target_of(match)
        sources = [
            other for (folder, name), other in by_name.items()
            if folder == src.parent.resolve() and other is not src and Path(name).stem == match["stem"]
        ]
        size = image_size(src) if sources else None
        if size is not None and any(_made_from(size, image_size(other), target) for other in sources):
            earlier.append(src)
    left_out = set(earlier)
    return [src for src in inputs if src not in left_out], earlier


def check_overwrites(inputs: list[Path], outputs: list[Path]) -> None:
    """UsageError when an output would replace an input (a user's own NAME_x2.png, say), before any work."""
    taken = {src.resolve(): src for src in inputs}
    for src, dst in zip(inputs, outputs):
        victim = taken.get(dst.resolve())
        if victim is not None:
            raise UsageError(f"{victim}: the output of {src} would overwrite an input; rename it or choose another output (-o DIR)")


def check_collisions(inputs: list[Path], outputs: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        first = seen.setdefault(dst.resolve(), src)
        if first is not src:
            raise UsageError(f"{first} and {src} would both be written to {dst}; use separate runs or the default output")


def check_quality(quality: int) -> int:
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be from 1 to 100, got {quality}")
    return quality


def check_format(fmt: Optional[str]) -> Optional[str]:
    """--format NAME -> the output suffix (None: follow the input or -o)."""
    if fmt is None:
        return None
    name = fmt.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(name, name)
    if name not in FORMAT_SUFFIXES:
        raise UsageError(f"unknown --format {fmt!r} (choose {', '.join(FORMAT_SUFFIXES)})")
    return FORMAT_SUFFIXES[name]
