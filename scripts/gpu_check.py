"""The measurements of ``scripts/gpu_check.sh`` (run that, not this): the CUDA tests, seconds per
reverse step and peak GPU memory at 256-2048 px output in fp32/fp16/bf16, and a 200-step training run,
into OUTDIR/gpu_check.json.  Every part has its own time limit so the whole stays under 5 minutes;
a part that fails or runs out of time is recorded as such and the others still run."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SIZES = (256, 512, 1024, 2048)  # output px per side, 4x from LR 64..512
PRECISIONS = ("fp32", "fp16", "bf16")
STEPS = 6  # reverse steps per timing run (strength 1: every one runs); the first interval is dropped
TEST_TIMEOUT_S = 120
TRAIN_TIMEOUT_S = 120
TRAIN_STEPS = (100, 100)  # encoder, noise predictor


def gpu_info() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gb": round(props.total_memory / 2**30, 2),
        "bf16_supported": torch.cuda.is_bf16_supported(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(), "host": platform.node(),
    }


def _text(data: Any) -> str:
    """A subprocess stream as text (TimeoutExpired hands back bytes even with text=True)."""
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def run_tests(out: Path) -> dict[str, Any]:
    """pytest -m cuda on tests/test_cuda.py; its output goes to cuda_tests.log."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_cuda.py",
           "--junitxml", str(out / "cuda_tests.xml")]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = f"{_text(exc.stdout)}{_text(exc.stderr)}\ntimed out after {TEST_TIMEOUT_S} s", None
    (out / "cuda_tests.log").write_text(log)
    summary = [ln for ln in log.strip().splitlines() if " in " in ln and ("passed" in ln or "failed" in ln)]
    return {"passed": rc == 0, "exit_code": rc, "summary": summary[-1] if summary else (log.strip().splitlines() or [""])[-1],
            "seconds": round(time.perf_counter() - start, 1)}


def time_steps(size: int, precision: str) -> dict[str, Any]:
    """Median seconds per reverse step (U-Net, noise, update) of the shipped model, untiled, at
    ``size`` px output (4x), and the peak memory of the whole upscale."""
    from srcli.pipeline import SRPipeline

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return {"status": "unsupported"}
    pipe = SRPipeline.from_pretrained(device="cuda", precision=precision)
    image = np.random.default_rng(size).integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    stamps: list[float] = []

    def on_step(done: int, total: int) -> None:  # noqa: ARG001
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    try:
        pipe.upscale(image[:16, :16], scale=4, steps=2, tile=0, strength=1.0)  # warm-up: cuDNN, allocator
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        pipe.upscale(image, scale=4, steps=STEPS, tile=0, strength=1.0, callback=on_step)
        torch.cuda.synchronize()
        total = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"status": "out of memory"}
    intervals = np.diff(stamps).tolist()
    return {
        "status": "ok", "step_s": round(statistics.median(intervals), 4), "steps_timed": len(intervals),
        "upscale_s": round(total, 3), "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def step_times() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for precision in PRECISIONS:
        for size in SIZES:
            try:
                rows[f"{size}/{precision}"] = {"size": size, "precision": precision, **time_steps(size, precision)}
            except Exception as exc:  # noqa: BLE001 - one failing case is a result, not the end of the check
                rows[f"{size}/{precision}"] = {"size": size, "precision": precision, "status": f"error: {exc}"}
            print(f"  {size}px {precision}: {rows[f'{size}/{precision}']}", flush=True)
    return rows


def training_data(folder: Path) -> Path:
    """data/train when the repository has it, else eight synthetic textured 256^2 images."""
    if (ROOT / "data" / "train").is_dir():
        return ROOT / "data" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    for i in range(8):
        base = np.stack([np.sin(x / (3 + i)) * 90 + 120, np.cos(y / (4 + i)) * 80 + 120, (x * (i + 1) + y) % 255], -1)
        Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)).save(folder / f"s{i}.png")
    return folder


def train_run(out: Path) -> dict[str, Any]:
    """``srcli train --device cuda`` for 100 + 100 steps of the default model size."""
    work = out / "train"
    data = training_data(work / "data")
    cmd = [sys.executable, "-m", "srcli", "train", "--data", str(data), "--out", str(work / "w.safetensors"),
           "--state-dir", str(work / "state"), "--encoder-steps", str(TRAIN_STEPS[0]), "--steps", str(TRAIN_STEPS[1]),
           "--batch", "16", "--patch", "64", "--save-every", "100", "--val-every", "100000", "--device", "cuda"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, rc = f"{_text(exc.stdout)}{_text(exc.stderr)}\ntimed out after {TRAIN_TIMEOUT_S} s", None
    seconds = time.perf_counter() - start
    (out / "train.log").write_text(log)
    records = []
    jsonl = work / "state" / "train.jsonl"
    if jsonl.is_file():
        records = [json.loads(ln) for ln in jsonl.read_text().splitlines() if ln.strip()]
    losses = [r["loss"] for r in records if isinstance(r.get("loss"), (int, float))]
    return {
        "passed": rc == 0 and (work / "w.safetensors").is_file(), "exit_code": rc, "steps": sum(TRAIN_STEPS),
        "seconds": round(seconds, 1), "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "log_tail": log.strip().splitlines()[-3:],
    }


def main() -> int:
    if len(sys.argv) != 2:
        print("error: usage: scripts/gpu_check.sh OUTDIR", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is false); gpu_check needs one",
              file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {"gpu": gpu_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print("CUDA tests ...", flush=True)
    report["cuda_tests"] = run_tests(out)
    print(f"  {report['cuda_tests']['summary']}", flush=True)
    print("seconds per reverse step (shipped model, 4x, untiled) ...", flush=True)
    report["step_times"] = step_times()
    print("200-step training run ...", flush=True)
    report["training"] = train_run(out)
    report["seconds"] = round(time.perf_counter() - start, 1)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    ok = report["cuda_tests"]["passed"] and report["training"]["passed"] and all(
        r["status"] in ("ok", "unsupported") for r in report["step_times"].values())
    print(f"{'all parts passed' if ok else 'SOME PARTS FAILED'} in {report['seconds']:.0f} s; report: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
