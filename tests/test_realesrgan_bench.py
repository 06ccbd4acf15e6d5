"""The ncnn reader of benchmarks/realesrgan_speed.py: a tiny RRDBNetX4 written as ncnn .param/.bin
files (fp16 and raw float32 weights) reads back into the same network."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import realesrgan_speed as bench  # noqa: E402


def write_ncnn(model: bench.RRDBNetX4, folder: Path, fp16: bool, slope: float = 0.2) -> tuple[Path, Path]:
    """The model's convs as ncnn Convolution layers (with the layers between them reduced to one
    Split so that the reader has to skip weightless layers)."""
    lines, blobs = [], bytearray()
    layers = model.conv_layers()
    lines.append("Input            data 0 1 data")
    lines.append("Split            s0 1 2 data d0 d1")
    prev = "d0"
    for i, (_, conv, leaky) in enumerate(layers):
        out, _, k, _ = conv.weight.shape
        act = f" 9=2 -23310=1,{slope:e}" if leaky else ""
        lines.append(f"Convolution      c{i} 1 1 {prev} b{i} 0={out} 1={k} 4={k // 2} 5=1 6={conv.weight.numel()}{act}")
        prev = f"b{i}"
        weight = conv.weight.detach().numpy().ravel()
        if fp16:
            data = weight.astype(np.float16).tobytes()
            blobs += struct.pack("<I", bench.NCNN_FP16_TAG) + data + bytes(-len(data) % 4)
        else:
            blobs += struct.pack("<I", bench.NCNN_FP32_TAG) + weight.astype(np.float32).tobytes()
        blobs += conv.bias.detach().numpy().astype(np.float32).tobytes()
    header = [str(bench.NCNN_MAGIC), f"{len(lines)} {len(lines) + 2}"]
    param, binary = folder / bench.MODEL_FILES[0], folder / bench.MODEL_FILES[1]
    param.write_text("\n".join(header + lines) + "\n")
    binary.write_bytes(bytes(blobs))
    return param, binary


def tiny(seed: int = 0) -> bench.RRDBNetX4:
    torch.manual_seed(seed)
    return bench.RRDBNetX4(nf=6, gc=3, blocks=2).eval()  # gc 3: odd fp16 sizes need the 4-byte padding


@pytest.mark.parametrize("fp16", [True, False])
def test_ncnn_files_read_back_into_the_network(tmp_path, fp16):
    source = tiny()
    param, binary = write_ncnn(source, tmp_path, fp16)
    target = bench.RRDBNetX4(nf=6, gc=3, blocks=2)
    target.load_state_dict(bench.state_dict_from_ncnn(target, bench.read_ncnn(param, binary)))
    tol = 1e-3 if fp16 else 0.0
    for name, value in source.state_dict().items():
        assert torch.allclose(target.state_dict()[name], value, atol=tol, rtol=tol), name
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=5e-3 if fp16 else 1e-6)


def test_mismatches_are_refused(tmp_path):
    param, binary = write_ncnn(tiny(), tmp_path, fp16=True)
    with pytest.raises(ValueError, match="convolutions"):  # another network size
        bench.state_dict_from_ncnn(bench.RRDBNetX4(nf=6, gc=3, blocks=3), bench.read_ncnn(param, binary))
    binary.write_bytes(binary.read_bytes() + bytes(4))
    with pytest.raises(ValueError, match="bytes left"):
        bench.read_ncnn(param, binary)
    param, binary = write_ncnn(tiny(), tmp_path, fp16=True, slope=0.1)  # not Real-ESRGAN's LeakyReLU
    with pytest.raises(ValueError, match="activation"):
        bench.state_dict_from_ncnn(tiny(), bench.read_ncnn(param, binary))
