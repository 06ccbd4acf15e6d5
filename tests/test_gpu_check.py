"""scripts/gpu_check.sh without a GPU: one error: line and exit 2, before it makes any folder (the
measurements themselves need CUDA: tests/test_cuda.py and the script's run on a GPU machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}  # no GPU, even on a GPU machine
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_without_a_gpu_it_fails_with_one_line(tmp_path):
    out = tmp_path / "report"
    proc = run(str(out))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "CUDA" in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [(), ("",), ("a", "b")])
def test_usage_errors_are_one_line(args):
    proc = run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: usage: scripts/gpu_check.sh OUTDIR"), proc.stderr


@pytest.mark.slow
def test_the_python_part_refuses_too(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "r").exists()
