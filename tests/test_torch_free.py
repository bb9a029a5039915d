"""The bundle format, the runtime and calibration import no torch and no open_clip.

A Jetson with JetPack may have no torch: everything a device runs must import without it. Each
check runs in a fresh interpreter, since this test process has torch loaded already.
"""

from __future__ import annotations

import subprocess
import sys

TORCH_FREE = ["froster_edge.bundle", "froster_edge.runtime", "froster_edge.calibration"]


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport sys\nprint([m for m in ('torch', 'open_clip') if m in sys.modules])\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])  # a list literal printed by the probe above


def test_every_module_of_the_torch_free_packages_imports_without_torch():
    """One interpreter walks all three packages and names the first module that brought torch in."""
    code = (
        "import importlib, pkgutil, sys\n"
        "culprits = []\n"
        f"for package in {TORCH_FREE!r}:\n"
        "    pkg = importlib.import_module(package)\n"
        "    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, package + '.')]\n"
        "    assert names, package\n"
        "    for name in [package] + names:\n"
        "        importlib.import_module(name)\n"
        "        if ('torch' in sys.modules or 'open_clip' in sys.modules) and not culprits:\n"
        "            culprits.append(name)\n"
        "print('culprit:', culprits)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "culprit: []" in proc.stdout, proc.stdout


def test_data_lists_and_sampling_import_without_torch_and_the_loader_still_resolves():
    assert _loaded_after("import froster_edge.data\nfrom froster_edge.data import read_video_list, eval_clip_indices") == []
    assert _loaded_after("from froster_edge.data import make_loader") == ["torch"]


def test_the_probe_sees_torch_when_it_is_imported():
    """The check above can fail: a module that imports torch is seen."""
    assert "torch" in _loaded_after("import froster_edge.export.reference")
