"""scripts/device_check.sh: valid bash, and its CPU dry run writes the report the GPU run writes.

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
    parity = report["parity"]["fp16_vs_fp32"]  # on the CPU both sides are fp32: identical
    assert parity["n"] == 4 and parity["min_cosine"] > 0.999 and parity["top1_agreement"] == 1.0
    assert report["parity"]["device_fp32_vs_cpu_fp32"]["max_abs"] == 0.0
    assert [t["batch"] for t in report["throughput"]] == [1, 2]
    assert all(t["clips_per_s"] > 0 and math.isfinite(t["clips_per_s"]) for t in report["throughput"])
    assert report["train"]["step_s"] > 0 and report["train"]["batch"] == 2
    assert "memory" in report and report["gpu_tests"] is None
