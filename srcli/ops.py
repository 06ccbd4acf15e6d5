"""Tensor-side image operations shared by the engine, the trainer and the metrics.

Images are float tensors (B, 3, H, W) in [-1, 1].  ``resize`` is the one resampling operator of
srcli: bicubic with antialiasing, which in PyTorch is numerically Pillow's ``Image.resize(BICUBIC)``
(the MATLAB ``imresize`` kernel, a = -0.5), so up(x_L) and the degradation agree with the protocol.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to ``size`` = (H, W), Pillow-equivalent, in float32 or wider."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    dtype = x.dtype
    work = x if dtype in (torch.float32, torch.float64) else x.float()
    out = F.interpolate(work, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.to(dtype)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``imresize`` 'bicubic')."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1
    far = ((-0.5 * x + 2.5) * x - 4) * x + 2
    return np.where(x <= 1, near, np.where(x <= 2, far, 0.0))


def matlab_weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) matrix of MATLAB ``imresize`` bicubic along one axis.

    Output pixel j (1-based) samples the input at u = j / scale + (1 - 1 / scale) / 2 (pixel
    centres aligned); the kernel is stretched by 1 / scale when shrinking (antialiasing), the taps
    are normalised to sum to 1, and taps beyond the edges mirror back into the image with the edge
    pixel repeated (symmetric padding: ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...)."""
    stretch = min(scale, 1.0)  # < 1 only when shrinking
    width = 4.0 / stretch
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    taps = np.floor(u - width / 2)[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]  # 1-based
    weights = stretch * _cubic(stretch * (u[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    index = mirror[np.mod(taps.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps.shape[1]), index.ravel()), weights.ravel())
    return matrix


def matlab_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MATLAB ``imresize(..., 'bicubic')`` of (B, C, H, W) to ``size`` = (H, W), computed in float64
    without rounding (the resize the SRDiff authors' data pipeline uses; ``resize`` is srcli's
    own).  The scale of each axis is out / in, as ``imresize`` derives it from an output size."""
    (h, w), (out_h, out_w) = x.shape[-2:], size
    rows = torch.from_numpy(matlab_weights(h, out_h, out_h / h)).to(x.device)
    cols = torch.from_numpy(matlab_weights(w, out_w, out_w / w)).to(x.device)
    return (rows @ x.double() @ cols.T).to(x.dtype)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output size for a scale: round(scale * input size), at least 1 pixel."""
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    return (t / 127.5 - 1.0).unsqueeze(0)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded."""
    if x.dim() == 4:
        x = x[0]
    return _levels(x, 255.0).permute(1, 2, 0).to(torch.uint8).cpu().numpy()


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 or uint16 -> (1, 3, H, W) float32 in [-1, 1]; 16-bit keeps its precision."""
    peak = _PEAKS.get(array.dtype)
    if peak is None:
        raise ValueError(f"expected uint8 or uint16 samples, got {array.dtype}")
    t = torch.from_numpy(np.array(array, dtype=np.float32, copy=True)).permute(2, 0, 1)
    return (t / (peak / 2) - 1.0).unsqueeze(0)


def _levels(x: torch.Tensor, peak: float) -> torch.Tensor:
    """[-1, 1] -> the nearest integer level 0..peak, as float32."""
    return ((x.detach().float().clamp(-1, 1) + 1) * (peak / 2)).round()


def tensor_to_array(x: torch.Tensor, dtype: type = np.uint8) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) of ``dtype`` (uint8 or uint16), rounded."""
    if x.dim() == 4:
        x = x[0]
    return _levels(x, _PEAKS[np.dtype(dtype)]).permute(1, 2, 0).cpu().numpy().astype(dtype)


def quantize(x: torch.Tensor, dtype: type = np.uint16) -> torch.Tensor:
    """A batch rounded to the sample levels of ``dtype``: bit for bit what
    ``array_to_tensor(tensor_to_array(x[i], dtype))`` gives, without leaving the device."""
    peak = _PEAKS[np.dtype(dtype)]
    return _levels(x, peak) / (peak / 2) - 1.0
