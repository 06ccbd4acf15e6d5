"""Position-keyed noise: the Gaussian noise of step k at HR pixel (y, x) as a function of (seed, k,
channel, y, x) alone, so tiles, batches and whole images see the same noise.

``field_noise`` is a counter-based hash computed on the device (no generator state, no host
copies).  Measured on one core of this 2-core CPU (CPU time per step): 24 ms at 1024x1024 and
96-120 ms at 2048x2048 for the earlier per-block CPU generators, 42 ms and 185-195 ms for the hash;
on the CPU that is ~1% of a U-Net step at those sizes, and on CUDA the hash runs as a few
elementwise kernels instead of a Python loop and a copy per step.  ``seeded_noise`` (one generator
per batch element) is what training's validation uses.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .diffusion import NoiseFn

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment (2**64 / golden ratio)
_COORD_BITS = 21  # pixel coordinates below 2**21 (2M px) fit the noise counter


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-scrambled 64-bit hash step."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """A well-scrambled generator seed from integers (a chain of splitmix64 steps)."""
    h = 0
    for value in values:
        h = _mix64(h ^ (int(value) & _MASK64))
    return h >> 1  # within torch's accepted seed range on every platform


def _int64(value: int) -> int:
    """An unsigned 64-bit value as the int64 with the same bits (torch has no uint64 arithmetic)."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _mix64_(x: torch.Tensor) -> torch.Tensor:
    """``_mix64`` without the increment, in place on an int64 tensor (wrapping multiplication;
    the masks make torch's arithmetic right shifts logical)."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        x ^= (x >> shift) & ((1 << (64 - shift)) - 1)
        if factor is not None:
            x *= _int64(factor)
    return x


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def _hash32_(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' "lowbias32": xorshift-multiply, twice), in place on int32.
    32-bit lanes: on CPUs without 64-bit vector shifts and multiplies (AVX2) this is several times
    faster than a 64-bit hash over the full field."""
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
        torch.bitwise_right_shift(x, shift, out=scratch)
        x ^= scratch.bitwise_and_((1 << (32 - shift)) - 1)
        if factor is not None:
            x *= _int32(factor)
    return x


NOISE_HALF_BLOCK = 32  # Box-Muller pairs pixel x with x + 32 inside runs of 64 px along a row


def noise_window(seed: int, k: int, channels: int, y0: int, x0: int, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The (channels, h, w) window at (y0, x0) of the step-k Gaussian noise field of ``seed``.

    Counter-based, in two levels: each row (c, y) gets a 64-bit key, splitmix64 of (seed, k, c, y)
    (``mix_seed(seed, k)`` plus the row's counter).  Along the row, pixels come in runs of 64: the
    pair (x, x + 32) of a run is counted by its first pixel, hashed twice with 32-bit hashes keyed
    by the two halves of the row key, which gives two 24-bit uniforms, and Box-Muller turns them into
    the Gaussians at x (cosine) and x + 32 (sine).  All of it is elementwise integer and float
    arithmetic on ``device``: no generator, no host copy, no loop, and the value at (seed, k, c, y, x)
    does not depend on the window asking for it (the integer hash is exact on every device; devices
    can differ only in the last bit of log/cos)."""
    if max(y0 + h, x0 + w) > 1 << _COORD_BITS:
        raise ValueError(f"noise fields are limited to {1 << _COORD_BITS} px per side")
    half = NOISE_HALF_BLOCK
    run0, run1 = x0 // (2 * half), (x0 + w - 1) // (2 * half) + 1  # the 64 px runs the window touches
    c = torch.arange(channels, device=device, dtype=torch.int64)[:, None]
    y = torch.arange(y0, y0 + h, device=device, dtype=torch.int64)[None, :]
    rows = _mix64_(((c << _COORD_BITS) | y) * _int64(_GOLDEN) + _int64(mix_seed(seed, k) + _GOLDEN))
    key_lo = (rows & 0xFFFFFFFF).to(torch.int32)[..., None, None]  # wraps into int32's range: same bits
    key_hi = ((rows >> 32) & 0xFFFFFFFF).to(torch.int32)[..., None, None]
    # the counter of a pair is its first pixel's x
    first_x = torch.arange(run0, run1, device=device, dtype=torch.int32)[:, None] * (2 * half) + torch.arange(
        half, device=device, dtype=torch.int32
    )
    h1 = first_x * _int32(0x9E3779B9) + key_lo  # (channels, h, runs, half)
    scratch = torch.empty_like(h1)
    _hash32_(h1, scratch)
    h2 = torch.bitwise_xor(h1, key_hi)
    _hash32_(h2, scratch)
    unit = 2.0**-24
    # u1 in (0, 1] from h1's top 24 bits, u2 in [0, 1) from h2's
    radius = (h1 >> 8).bitwise_and_(0xFFFFFF).add_(1).float().mul_(unit).log_().mul_(-2.0).sqrt_()
    angle = (h2 >> 8).bitwise_and_(0xFFFFFF).float().mul_(2 * math.pi * unit)
    out = torch.empty((channels, h, run1 - run0, 2, half), device=device)
    torch.cos(angle, out=out[..., 0, :]).mul_(radius)
    torch.sin(angle, out=out[..., 1, :]).mul_(radius)
    first = x0 - run0 * 2 * half
    return out.reshape(channels, h, -1)[..., first : first + w]


def field_noise(seeds: Sequence[int], origins: Optional[Sequence[tuple[int, int]]] = None) -> NoiseFn:
    """A ``NoiseFn`` whose batch element b is the window, with top-left corner ``origins[b]`` (default
    (0, 0)) on the global HR grid, of the noise field of ``seeds[b]`` (``noise_window``), made on
    the device of the tensor it is asked to match: the value at (seed, k, channel, y, x) is the same
    whichever tile, batch, device or image size asks for it."""
    seeds = [int(s) for s in seeds]
    origins = [(0, 0)] * len(seeds) if origins is None else [(int(y), int(x)) for y, x in origins]
    if len(origins) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(origins)} origins")
    if any(y < 0 or x < 0 for y, x in origins):
        raise ValueError("noise origins must be non-negative")

    def noise(k: int, like: torch.Tensor) -> torch.Tensor:
        n, c, h, w = like.shape
        if n != len(seeds):
            raise ValueError(f"noise for a batch of {n} from {len(seeds)} seeds")
        windows = [noise_window(seed, k, c, y0, x0, h, w, like.device) for seed, (y0, x0) in zip(seeds, origins)]
        return torch.stack(windows).to(like.dtype)

    return noise


def seeded_noise(seeds: Sequence[int], device: torch.device | str = "cpu") -> NoiseFn:
    """Noise with one generator per batch element, so sample i depends only on seeds[i] and not on
    what else is in the batch.  Generated on ``device`` (no per-step host-to-device copies)."""
    device = torch.device(device)
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def noise(k: int, like: torch.Tensor) -> torch.Tensor:
        if like.shape[0] != len(gens):
            raise ValueError(f"noise for a batch of {like.shape[0]} from {len(gens)} seeds")
        parts = [torch.randn(like.shape[1:], generator=g, device=device) for g in gens]
        return torch.stack(parts).to(like.dtype)

    return noise
