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


def unreachable(urls: list[str], timeout: float = 10.0) -> str | None:
    """Why the first of the package indexes `urls` does not answer (None: all answer): pip's resolver
    would fail on the network, not on the install line."""
    import urllib.error
    import urllib.request

    for url in urls:
        try:
            urllib.request.urlopen(url, timeout=timeout).close()
        except (urllib.error.URLError, OSError) as e:
            return f"the package index {url} does not answer ({getattr(e, 'reason', e)}): nothing to resolve against"
    return None


def test_an_index_that_does_not_answer_is_a_skip_reason_not_a_failure():
    from .helpers import free_port

    assert "does not answer" in unreachable([f"http://127.0.0.1:{free_port()}/simple/"], timeout=2.0)
    assert unreachable([]) is None


@pytest.mark.skipif(os.environ.get("FROSTER_EDGE_PIP_RESOLVE") != "1",
                    reason="pip's resolver against the package index takes minutes per line: set FROSTER_EDGE_PIP_RESOLVE=1")
@pytest.mark.parametrize("line", readme_install_lines())
def test_pip_resolves_each_install_line_with_one_onnxruntime(line, tmp_path):
    extras = line_extras(line)
    report = tmp_path / "report.json"
    index = re.findall(r"(--extra-index-url \S+)", line)  # the GPU lines name NVIDIA's index
    reason = unreachable([i.split()[1] for i in index])
    if reason:
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), f".[{','.join(extras)}]", *" ".join(index).split()],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = {canonicalize_name(i["metadata"]["name"]) for i in json.loads(report.read_text())["install"]}
    assert installed & ORT == EXPECTED[target(extras)], sorted(installed)


# Recorded from the package index (pip index versions; pip download --no-deps --only-binary=:all:
# --python-version 3.10 --platform manylinux2014_aarch64; readelf -d and strings on the wheel):
# the releases of the two distributions that carry cuda.bindings, and the CUDA each one's runtime is
# built against (it is linked in: no libcudart among the wheel's NEEDED libraries), so the CUDA driver
# it needs. cuda-python 12.6.2.post1 ships cp310-manylinux_2_17_aarch64 with cuda/bindings/runtime,
# built against /usr/local/cuda-12.6.
CUDA_BINDING_RELEASES = {
    "cuda-python": ["12.6.2.post1", "12.8.0", "12.9.0", "12.9.4", "12.9.10", "13.0.0", "13.4.4"],
    "cuda-bindings": ["12.8.0", "12.9.0", "12.9.4", "12.9.10", "13.0.0", "13.5.0"],
}
JETPACK_6_CUDA = (12, 6)  # JetPack 6.1 and 6.2 (L4T r36.4): the driver a stock Jetson has


def test_the_jetson_extra_pins_cuda_python_to_jetpacks_cuda_minor():
    """A cuda-python whose linked-in runtime is newer than JetPack's CUDA 12.6 driver answers
    cudaErrorInsufficientDriver, and every TensorRT route exits 3: the jetson extra admits only
    releases built for CUDA 12.6, and at least the one recorded with a Python 3.10 aarch64 wheel."""
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["optional-dependencies"]["jetson"]]
    cuda = [r for r in reqs if canonicalize_name(r.name) in CUDA_BINDING_RELEASES]
    assert len(cuda) == 1, reqs
    admitted = [v for v in CUDA_BINDING_RELEASES[canonicalize_name(cuda[0].name)] if cuda[0].specifier.contains(v, prereleases=False)]
    assert admitted, f"{cuda[0]} admits no recorded release"
    assert all(Version(v).release[:2] == JETPACK_6_CUDA for v in admitted), f"{cuda[0]} admits {admitted}"
    assert "12.6.2.post1" in admitted


def test_the_openvino_extras_add_neither_torch_nor_an_onnxruntime_build():
    """openvino (and nncf for calibrate) sit beside the cpu or gpu extra: nothing they pull in may
    bring torch onto a torch-free device or a second ONNX Runtime build onto a GPU box."""
    for extras in (["openvino"], ["nncf"]):
        got = closure(declared(extras))
        assert {"openvino"} <= got and not got & (ORT | {"torch"}), (extras, sorted(got & (ORT | {"torch"})))
    assert "nncf" in closure(declared(["nncf"])) and "nncf" in closure(declared(["dev"]))
