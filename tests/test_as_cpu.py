"""benchmarks/as_cpu.py: a process that sees an older x86 CPU class runs that class's INT8 kernels.

What the INT8 figures for AVX2-only CPUs in docs/benchmarks.md rest on: under the mask every
CPUID reader (ours via /proc/cpuinfo, NumPy's, torch's) sees the older class, ONNX Runtime's u8 x s8
matmul saturates int16 pairs exactly as `vpmaddubsw` does (checked against a reference written
here), and `calibrate` on the real clips chooses and gates for that class. Skips where the CPU or
hypervisor offers no CPUID faulting, or no C compiler is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from froster_edge.calibration.cpu_features import detect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import as_cpu  # noqa: E402

WHY = as_cpu.unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"cannot imitate an older CPU here: {WHY}")
HERE = detect()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """This environment with the shim built into a temporary cache, not the user's."""
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}


def as_class(env, cpu_class: str, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "as_cpu.py"), cpu_class, "--", *command],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


READERS = """
import json, torch
from numpy._core._multiarray_umath import __cpu_features__ as np_table
from froster_edge.calibration.cpu_features import detect
print(json.dumps({"ours": detect().dot_product, "torch": torch.backends.cpu.get_cpu_capability(),
                  "numpy": {k: bool(np_table[k]) for k in ("AVX2", "AVX512F", "AVX512BW", "AVX512VNNI")}}))
"""


def test_every_reader_sees_the_older_class(env):
    r = as_class(env, "avx2", sys.executable, "-c", READERS)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["ours"] == "avx2" and seen["torch"] == "AVX2"
    assert seen["numpy"] == {"AVX2": True, "AVX512F": False, "AVX512BW": False, "AVX512VNNI": False}
    if "avx512bw" in HERE.flags:  # the mask only hides: an AVX-512 class needs a CPU that has it
        seen = json.loads(as_class(env, "avx512bw", sys.executable, "-c", READERS).stdout)
        assert seen["ours"] == "avx512bw"
        assert seen["numpy"] == {"AVX2": True, "AVX512F": True, "AVX512BW": True, "AVX512VNNI": False}


MATMUL = """
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "g",
                          [helper.make_tensor_value_info("A", TensorProto.UINT8, list(a.shape))],
                          [helper.make_tensor_value_info("Y", TensorProto.INT32, None)], [numpy_helper.from_array(b, "B")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
np.save(sys.argv[3], y)
"""


def pairwise_saturated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """u8 x s8 matmul as `vpmaddubsw` + `vpmaddwd` compute it: each pair of adjacent k summed into a saturating int16."""
    products = a.astype(np.int64)[:, :, None] * b.astype(np.int64)[None, :, :]  # (M, K, N)
    pairs = products[:, 0::2] + products[:, 1::2]
    return np.clip(pairs, -32768, 32767).sum(axis=1)


@pytest.mark.parametrize("cpu_class", ["native", "avx2", "avx512bw"])
def test_onnx_runtime_u8s8_matmul_saturates_like_the_class(env, cpu_class, tmp_path):
    if cpu_class == "avx512bw" and "avx512bw" not in HERE.flags:
        pytest.skip("this CPU has no AVX-512BW to keep")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 256), dtype=np.uint8)
    a[:, ::2] = 255  # every pair's first product is large: a sizeable share of pairs saturates
    b = rng.integers(-128, 128, (256, 24), dtype=np.int8)
    for name, x in {"a": a, "b": b}.items():
        np.save(tmp_path / f"{name}.npy", x)
    command = [sys.executable, "-c", MATMUL, str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), str(tmp_path / "y.npy")]
    r = (subprocess.run(command, capture_output=True, text=True, timeout=120) if cpu_class == "native"
         else as_class(env, cpu_class, *command))
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy").astype(np.int64)
    exact = a.astype(np.int64) @ b.astype(np.int64)
    saturated = pairwise_saturated(a, b)
    assert np.abs(saturated - exact).max() > 10_000  # the inputs do tell the two apart
    saturates = HERE.saturates_u8s8 if cpu_class == "native" else True
    np.testing.assert_array_equal(got, saturated if saturates else exact)


def test_calibrate_chooses_and_gates_for_the_avx2_class(env):
    """The calibration test on the real clips, in a process that sees an AVX2-only CPU: its candidates
    avoid full 8-bit u8 x s8, and what the gate recorded matches the test's direct comparison."""
    test = "tests/test_calibration.py::test_calibrate_chooses_for_this_cpu_and_records_what_a_direct_comparison_finds"
    probe = "from froster_edge.calibration.cpu_features import detect; print(detect().to_dict()['saturates_u8s8'])"
    assert as_class(env, "avx2", sys.executable, "-c", probe).stdout.strip() == "True"
    r = as_class(env, "avx2", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, timeout=600)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
