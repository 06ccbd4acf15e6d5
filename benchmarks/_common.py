"""What every benchmark script shares: arguments, thread setup, machine info and result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing srcli

import torch  # noqa: E402


def parser(
    description: str, splits: Sequence[str] = (), device: str = "cpu", precision: str = "fp32"
) -> argparse.ArgumentParser:
    """The shared options; each of ``splits`` ("val", "tune") adds --val or --tune for the scripts that
    read that split of `srcli prepare-data`.  ``device``/``precision`` are the defaults of --device and
    --precision (the README's tables are CPU fp32)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in splits:
        p.add_argument(f"--{split}", type=Path, default=None,
                       help=f"{SPLITS[split]} folder (default: data/{split} in or beside the checkout)")
    p.add_argument("--weights", default=None, help="checkpoint (path, name in weights/); default: the shipped model")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default=device, help=f"auto, cpu or cuda[:N] (default: {device})")
    p.add_argument("--precision", default=precision, help=f"auto, fp32, fp16 or bf16 (default: {precision})")
    p.add_argument("--quick", action="store_true", help="a small smoke run; results go to results/quick/")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results)")
    p.add_argument("--default-malloc", action="store_true",
                   help="skip srcli's allocator setting (engine.tune_cpu_allocator), for before/after numbers")
    return p


def setup(args: argparse.Namespace) -> int:
    """Threads and the allocator setting the CLI uses; returns the thread count."""
    from srcli.engine import tune_cpu_allocator

    if not args.default_malloc:
        tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.get_num_threads()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> Optional[str]:
    """HEAD's short hash, with "+changes" when tracked files differ from it (the numbers then come
    from a working tree that no commit holds exactly)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return (commit + ("+changes" if dirty.returncode == 1 else "")) if commit else None


def machine_info(args: argparse.Namespace, weights: Optional[str] = None) -> dict[str, Any]:
    """The facts a reader needs to compare numbers across machines."""
    info: dict[str, Any] = {
        "allocator": "glibc default" if args.default_malloc else "srcli (engine.tune_cpu_allocator)",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "srcli_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if weights is not None:
        info["weights"] = weights
    return info


def load_pipeline(args: argparse.Namespace, model: Optional[str] = None, weights: Optional[str] = None):
    """The pipeline of --weights (or, with ``model``, of ``weights`` when given, else the shipped
    model of that name) on --device in --precision; a bad device or precision is a one-line error."""
    from srcli.pipeline import SRPipeline, UsageError

    if model is None:
        weights = args.weights
    try:
        return SRPipeline.from_pretrained(weights, device=args.device, precision=args.precision,
                                          model=None if weights else model)
    except UsageError as exc:
        raise SystemExit(f"error: {exc}") from None


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so wall times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_label(pipe) -> str:
    """"cpu fp32", "cuda fp16", ...: what a table's numbers ran on."""
    return f"{pipe.device.type} {str(pipe.dtype).replace('torch.', '')}"


SPLITS = {"val": "validation", "tune": "tuning", "train": "training"}


def split_folder(p: argparse.ArgumentParser, args: argparse.Namespace, split: str = "val") -> Path:
    """--val / --tune, else data/<split> in or beside the checkout; a usage error when there is none."""
    given = getattr(args, split)
    candidates = [given] if given else [ROOT / "data" / split, ROOT.parent / "data" / split]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    p.error(f"no {SPLITS[split]} folder: pass --{split}, or build data/{split} with `srcli prepare-data data/`")


def results_dir(args: argparse.Namespace) -> Path:
    base = args.out or RESULTS
    return base / "quick" if args.quick else base


def write_results(args: argparse.Namespace, name: str, data: dict[str, Any], markdown: str) -> Path:
    """``NAME.json`` (all data) and ``NAME.md`` (the table the README quotes); the "before" numbers
    of ``--default-malloc`` go to ``NAME-default-malloc.*``."""
    if args.default_malloc:
        name += "-default-malloc"
    folder = results_dir(args)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {folder / name}.json and .md", file=sys.stderr)
    return folder


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def md_machine(info: dict[str, Any]) -> str:
    return (
        f"Machine: {info['cpu']}, {info['cores_available']} cores, torch {info['torch']}, "
        f"{info['threads']} threads, Python {info['python']}; allocator: {info['allocator']}; "
        f"srcli {info.get('srcli_commit') or '?'}, {info['date']}.\n"
    )


def command_line() -> str:
    """How this script was run, relative to the repository root, for the results' "Command:" line."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python3", str(script), *sys.argv[1:]])


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
