"""scripts/device_check.sh: valid bash, its CPU dry run writes the report the GPU run writes, and on
an image without the five packages a GPU image lacks it says so, one line each, and stops.

The GPU run itself (pytest -m "gpu or trt", then the figures) happens where a device is lent.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from .helpers import ROOT

SCRIPT = ROOT / "scripts" / "device_check.sh"


def test_the_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_dry_run_writes_the_report(tmp_path):
    out = tmp_path / "report" / "device_report.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu"
    for name in ("fp16_vs_fp32", "bf16_vs_fp32"):  # on the CPU both sides are fp32: identical
        parity = report["parity"][name]
        assert parity["n"] == 4 and parity["min_cosine"] > 0.999 and parity["top1_agreement"] == 1.0
    assert report["parity"]["device_fp32_vs_cpu_fp32"]["max_abs"] == 0.0
    assert [t["batch"] for t in report["throughput"]] == [1, 2]
    assert all(t["clips_per_s"] > 0 and math.isfinite(t["clips_per_s"]) for t in report["throughput"])
    assert report["train"]["step_s"] > 0 and report["train"]["batch"] == 2
    assert "memory" in report and report["gpu_tests"] is None
    # a CPU box has no CUDA driver: the round trip records cuda-python's refusal (or, with a GPU, equal bytes)
    cuda = report["cuda_bindings"]
    assert cuda.get("equal") is True or "cudaGetDeviceCount" in cuda.get("error", "") or "cuda" in cuda.get("error", "").lower()
    runtime = report["torch_free_runtime"]
    assert runtime["returncode"] == 0 and runtime["decisions"] == 3 and runtime["backend"].startswith("ort-cpu"), runtime


def absent(tmp_path, modules: set[str]):
    """A folder for PYTHONPATH whose sitecustomize makes importing `modules` raise ModuleNotFoundError."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(modules)!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, _Absent())\n")
    return site


THE_FIVE = {"open_clip": "open_clip_torch", "ftfy": "ftfy", "wcwidth": "wcwidth", "av": "av", "paho.mqtt": "paho-mqtt"}


def test_without_the_five_packages_the_dry_run_says_so_one_line_each_and_stops(tmp_path):
    """A GPU image without open_clip_torch, ftfy, wcwidth, av and paho-mqtt (importing them raises, as on
    that image) and with `python3` but no `python`: one line per missing module, the same in the report,
    a non-zero exit, and nothing else run (no traceback from a report that dies at import)."""
    site = absent(tmp_path, {m.split(".")[0] for m in THE_FIVE})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (bin_dir / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", PYTHONPATH=str(site))
    out = tmp_path / "report.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(THE_FIVE), lines
    for line, (module, dist) in zip(lines, THE_FIVE.items(), strict=False):
        assert line.startswith(f"device_check: cannot import {module} (") and f"install {dist}" in line, line
    report = json.loads(out.read_text())
    assert report == {"missing": lines, "ran": False}


def test_the_fidelity_tests_skip_without_av_instead_of_breaking_collection(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(absent(tmp_path, {"av"}))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-rs",
                           "tests/test_fidelity.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 5, proc.stdout[-2000:]  # no tests collected, no collection error
    assert "SKIPPED [1]" in proc.stdout and "PyAV" in proc.stdout and "error" not in proc.stdout.lower(), proc.stdout[-2000:]
