"""The bundle format, the runtime and calibration import no torch and no open_clip.

A Jetson with JetPack may have no torch: everything a device runs must import without it. Each
check runs in a fresh interpreter, since this test process has torch loaded already.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.prompts import prompts_for

from .helpers import CLIPS, ROOT, run_python

TORCH_FREE = ["froster_edge.bundle", "froster_edge.runtime", "froster_edge.calibration"]


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport sys\nprint([m for m in ('torch', 'open_clip') if m in sys.modules])\n"
    proc = run_python(probe)
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
    out = run_python(code).stdout
    assert "culprit: []" in out, out


def test_data_lists_and_sampling_import_without_torch_and_the_loader_still_resolves():
    assert _loaded_after("import froster_edge.data\nfrom froster_edge.data import read_video_list, train_transform\n"
                         "from froster_edge.sampling import SamplingSpec") == []
    assert _loaded_after("from froster_edge.data import make_loader") == ["torch"]


def test_the_probe_sees_torch_when_it_is_imported():
    """The check above can fail: a module that imports torch is seen."""
    assert "torch" in _loaded_after("import froster_edge.export.reference")


# As on a device without torch: `import torch` fails, and importlib.util.find_spec answers None (a None entry
# in sys.modules), which is how libraries such as nncf ask; the finder refuses any submodule too.
BLOCK = (
    "import sys\n"
    "sys.modules.update({'torch': None, 'open_clip': None, 'torchvision': None})\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'open_clip', 'torchvision'):\n"
    "            raise ImportError(f'{name} is blocked: this test plays a device without torch')\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def _run_without_torch(*args: str) -> subprocess.CompletedProcess:
    """`froster-edge ARGS` in an interpreter where importing torch or open_clip raises ImportError."""
    code = BLOCK + f"sys.argv = ['froster-edge', *{list(args)!r}]\nfrom froster_edge.cli import main\nmain()\n"
    return run_python(code, timeout=600, cwd=ROOT, check=False)


def test_the_block_really_blocks_torch():
    proc = run_python(BLOCK + "import torch", check=False)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr and "torch" in proc.stderr


def test_labels_bundle_and_calibrate_run_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (tmp_path / "mine.txt").write_text("waving: moving a hand from side to side\nclapping\nclean and jerk\n")
    proc = _run_without_torch("labels", "--bundle", str(bundle), "--classes", str(tmp_path / "mine.txt"))
    assert proc.returncode == 0, proc.stderr
    table = load_labels(bundle / mf.LABELS_FILE)
    assert table.names == ["waving", "clapping", "clean and jerk"]
    # the same classes through torch and open_clip in this process: the same table
    from froster_edge.bundle.sessions import onnx_text_encoder
    from froster_edge.model.clip import tokenize
    from froster_edge.prompts import read_class_texts

    manifest = mf.verify_bundle(bundle)
    classes = read_class_texts(tmp_path / "mine.txt")
    prompts = [p for c in classes for p in prompts_for(c)]
    want = onnx_text_encoder(bundle / mf.TEXT_ONNX)(tokenize(prompts, manifest["model"]["model_cfg"]).numpy())
    want = want.reshape(len(classes), -1, want.shape[-1])
    want = want / np.linalg.norm(want, axis=-1, keepdims=True)
    want = want.mean(1) / np.linalg.norm(want.mean(1), axis=-1, keepdims=True)
    np.testing.assert_allclose(table.embeddings, want, atol=1e-5)

    rows = [("stgcn_clean_and_jerk.mp4", 2), ("v_Basketball_g01_c02.mp4", 1), ("mmaction2_demo_arm_wrestling.mp4", 0)]
    (tmp_path / "val.txt").write_text("".join(f"{f} {label}\n" for f, label in rows))
    proc = _run_without_torch("calibrate", "--bundle", str(bundle), "--videos", str(CLIPS), "--max-clips", "3",
                              "--max-held-out", "2", "--confidence", "--val", str(tmp_path / "val.txt"), "--root", str(CLIPS),
                              "--json", str(tmp_path / "report.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["int8"]["gate"]["held_out_clips"] >= 1 and report["confidence"]["clips"] == 3
    assert mf.verify_bundle(bundle)["confidence"]["temperature"] == report["confidence"]["temperature"]


def test_a_bundle_without_tokenizer_json_is_tokenized_by_open_clip_or_refused_in_one_line(tiny_bundle, tmp_path):
    from froster_edge.bundle.relabel import relabel_bundle
    from froster_edge.prompts import read_class_texts

    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(tiny_bundle, old)
    shutil.copytree(tiny_bundle, new)
    (old / mf.TOKENIZER_FILE).unlink()  # what an export before bundles carried tokenizer.json wrote
    mf.write_manifest(old, {k: v for k, v in mf.read_manifest(old).items() if k != "tokenizer"})
    (tmp_path / "mine.txt").write_text("waving\nclapping\n")
    classes = read_class_texts(tmp_path / "mine.txt")
    np.testing.assert_array_equal(relabel_bundle(old, classes).embeddings, relabel_bundle(new, classes).embeddings)

    proc = _run_without_torch("labels", "--bundle", str(old), "--classes", str(tmp_path / "mine.txt"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no tokenizer.json" in lines[0] and "export the bundle again" in lines[0]


GPU_SESSION_PROBE = BLOCK + """
import json
import onnxruntime as ort

events = []
real_session = ort.InferenceSession


class RecordedSession:
    # ONNX Runtime's session on the CPU, reporting the providers it was asked for: this box has no GPU,
    # and the test is about what happens before a CUDA or TensorRT session opens
    def __init__(self, path, so=None, providers=None):
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        events.append('session ' + names[0])
        self._session, self._names = real_session(path, so, providers=['CPUExecutionProvider']), names

    def get_providers(self):
        return self._names

    def run(self, *args):
        return self._session.run(*args)


ort.get_available_providers = lambda: ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
ort.preload_dlls = lambda **kw: events.append('preload ' + ','.join(k for k, v in sorted(kw.items()) if v))
ort.InferenceSession = RecordedSession
from pathlib import Path
from froster_edge.bundle import manifest as mf
from froster_edge.runtime.backends import open_backend

bundle = Path(BUNDLE)
for name in ('ort-cuda', 'ort-trt'):
    open_backend(name, bundle, mf.verify_bundle(bundle)).backend.close()
print(json.dumps(events))
"""


def test_cuda_and_tensorrt_sessions_preload_the_cuda_libraries_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    """onnxruntime-gpu's provider libraries have no RPATH to the nvidia-* wheels; `import torch` loads
    those as a side effect, the torch-free runtime must call onnxruntime.preload_dlls itself, once,
    before its first CUDA or TensorRT session."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    proc = run_python(f"BUNDLE = {str(bundle)!r}\n" + GPU_SESSION_PROBE, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = json.loads(proc.stdout.strip().splitlines()[-1])
    assert events[0] == "preload cuda,cudnn", events
    assert events[1:] == ["session CUDAExecutionProvider", "session TensorrtExecutionProvider"], events


def test_search_runs_where_torch_cannot_be_imported(tiny_bundle, tmp_path):
    """`froster-edge search` on a device: the archive read, the query encoded by the bundle's ONNX text encoder."""
    from froster_edge.runtime.site.archive import Archive, ArchiveOptions

    model = mf.read_manifest(tiny_bundle)["model"]

    class Decision:  # what the pipeline hands the archive, with a real-sized embedding
        def __init__(self, i: int):
            self.camera, self.stream, self.media_time, self.time = "yard", 0, float(i), 1.8e9 + i
            self.label, self.top = "yoga", [("yoga", 0.5)]
            self.embedding = np.random.default_rng(i).standard_normal(int(model["embed_dim"])).astype(np.float32)

    archive = Archive(ArchiveOptions(file=tmp_path / "a.db", thumb_every_s=0), model["fingerprint"], int(model["embed_dim"]))
    for i in range(5):
        archive.emit(Decision(i))
    archive.close()
    proc = _run_without_torch("search", "yoga", "--archive", str(tmp_path / "a.db"), "--bundle", str(tiny_bundle))
    assert proc.returncode == 0, proc.stderr
    assert "5 decisions searched" in proc.stdout and "yard" in proc.stdout
