"""Packaging: each README install line gets exactly one ONNX Runtime build (or none, on a Jetson).

onnxruntime and onnxruntime-gpu install the same `onnxruntime` package folder; with both, the
CUDA/TensorRT providers usually vanish. The README's install lines are read from the README itself,
so the lines a user copies are the lines checked. Offline: the extras of pyproject.toml expanded,
then every requirement followed through the metadata of the distributions installed here. With
FROSTER_EDGE_PIP_RESOLVE=1 (network, minutes): pip's own resolver, `pip install --dry-run --report`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .helpers import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ORT = {"onnxruntime", "onnxruntime-gpu"}
EXPECTED = {"cpu": {"onnxruntime"}, "gpu": {"onnxruntime-gpu"}, "jetson": set()}  # per target extra


def readme_install_lines() -> list[str]:
    """The `pip install` lines of the README's Install section."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Install\b.*?(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Install' section"
    return re.findall(r"^.*pip install -e '\.\[[a-z,]+\]'.*$", section.group(0), re.M)


def line_extras(line: str) -> list[str]:
    return re.search(r"'\.\[([a-z,]+)\]'", line).group(1).split(",")


def target(extras: list[str]) -> str:
    (name,) = [e for e in extras if e in EXPECTED]
    return name


def declared(extras: list[str]) -> set[str]:
    """Requirement names of froster-edge with `extras`, its self-references (froster-edge[...]) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    wanted, names = set(extras), set()
    while True:
        reqs = [Requirement(r) for r in project["dependencies"]] + [Requirement(r) for e in wanted for r in optional[e]]
        more = {e for r in reqs if canonicalize_name(r.name) == "froster-edge" for e in r.extras} - wanted
        if not more:
            break
        wanted |= more
    names = {canonicalize_name(r.name) for r in reqs} - {"froster-edge"}
    return names


def closure(names: set[str]) -> set[str]:
    """`names` and everything their installed distributions require (markers evaluated, no extras)."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (the GPU wheels): its own name still counts
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return out


def test_readme_gives_one_install_line_per_target():
    lines = readme_install_lines()
    targets = [target(line_extras(line)) for line in lines]
    assert set(targets) == set(EXPECTED), lines
    jetson = [line for line in lines if "jetson" in line_extras(line)]
    assert all("--system-site-packages" in line for line in jetson), "the Jetson venv must see JetPack's TensorRT"
    assert "'.[dev]'" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("line", readme_install_lines())
def test_each_install_line_gets_exactly_its_onnxruntime(line):
    extras = line_extras(line)
    want = EXPECTED[target(extras)]
    got = closure(declared(extras)) & ORT
    assert got == want, f"{line}: {sorted(got)} (want {sorted(want)})"


def test_make_install_gets_the_cpu_build_only():
    assert closure(declared(["dev"])) & ORT == {"onnxruntime"}


@pytest.mark.skipif(os.environ.get("FROSTER_EDGE_PIP_RESOLVE") != "1",
                    reason="pip's resolver against the package index takes minutes per line: set FROSTER_EDGE_PIP_RESOLVE=1")
@pytest.mark.parametrize("line", readme_install_lines())
def test_pip_resolves_each_install_line_with_one_onnxruntime(line, tmp_path):
    extras = line_extras(line)
    report = tmp_path / "report.json"
    index = re.findall(r"(--extra-index-url \S+)", line)  # the GPU lines name NVIDIA's index
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), f".[{','.join(extras)}]", *" ".join(index).split()],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = {canonicalize_name(i["metadata"]["name"]) for i in json.loads(report.read_text())["install"]}
    assert installed & ORT == EXPECTED[target(extras)], sorted(installed)


def test_the_openvino_extras_add_neither_torch_nor_an_onnxruntime_build():
    """openvino (and nncf for calibrate) sit beside the cpu or gpu extra: nothing they pull in may
    bring torch onto a torch-free device or a second ONNX Runtime build onto a GPU box."""
    for extras in (["openvino"], ["nncf"]):
        got = closure(declared(extras))
        assert {"openvino"} <= got and not got & (ORT | {"torch"}), (extras, sorted(got & (ORT | {"torch"})))
    assert "nncf" in closure(declared(["nncf"])) and "nncf" in closure(declared(["dev"]))
