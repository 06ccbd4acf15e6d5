"""Where and in what precision the networks run: device and dtype resolution, CPU feature flags."""

from __future__ import annotations

import torch

from .errors import UsageError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# channels_last on the CPU too: CPU time of a U-Net step of the c=32 model, 1 thread, -10% at
# 256x256 (0.37 -> 0.33 s) and -12% at 512x512 (1.40 -> 1.25 s); a whole upscale (encoder and 8
# steps) -10% and -10..24%; the noise prediction moves by 1e-7 (one pixel in 200k one level off).
CPU_CHANNELS_LAST = True


def resolve_device(device: str = "auto") -> torch.device:
    """auto -> cuda when available, else cpu.  Asking for cuda without CUDA is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available on this machine (use cpu or auto)")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device {device!r} (choose auto, cpu or cuda)")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).  Elsewhere oneDNN
    emulates bf16, slower than fp32, so auto precision stays fp32 there."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the networks' weights and activations: auto -> fp16 on CUDA, bf16 on a CPU with
    native bf16 (``cpu_has_native_bf16``), else fp32.  Every precision runs on every device (fp16 on
    the CPU is slow but is the exact code path CUDA runs); image-space tensors stay float32 whatever
    is chosen."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose auto, {', '.join(PRECISIONS)})")
    return PRECISIONS[precision]
