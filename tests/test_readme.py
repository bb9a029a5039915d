"""The README's Python example runs as written, with the tiny model in place of ViT-B/16."""

from __future__ import annotations

import re
import subprocess

import pytest

from .helpers import ROOT, TINY_MODEL


def test_readme_python_example_runs(tmp_path, monkeypatch):
    src = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", src, re.S).group(1)
    code = (
        code.replace('model_name="ViT-B-16", pretrained="openai"', f'model_name="{TINY_MODEL}", pretrained=None, image_size=64')
        .replace("224, 224", "64, 64")
        .replace('"students/mine"', f'"{tmp_path / "mine"}"')
        .replace('"examples/clips/classes.txt"', f'"{ROOT / "examples/clips/classes.txt"}"')
    )
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["logits"].shape == (2, 12)
    assert (tmp_path / "mine" / "model.safetensors").is_file()


def test_readme_export_example_runs(tmp_path):
    src = (ROOT / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", src, re.S) if "export_bundle" in b)
    code = (
        code.replace('model_name="ViT-B-16", pretrained="openai", num_frames=8',
                     f'model_name="{TINY_MODEL}", pretrained=None, image_size=64, num_frames=4')
        .replace('"bundles/b16', f'"{tmp_path}/b16')
        .replace('"examples/clips/', f'"{ROOT}/examples/clips/')
    )
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["table"].names[0] == "arm wrestling" and scope["manifest"]["parity"]["gates"][0]["passed"]


def test_the_layout_table_names_every_folder_and_module():
    """README "Layout": every top-level folder, and every module of the packages it describes file by file."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("\n## ", text.index("## Layout") + 1)]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: the tracked files are unknown")
    folders = {p.split("/")[0] for p in tracked if "/" in p and not p.startswith(".")}
    missing = [f for f in sorted(folders) if f"`{f}/" not in layout]
    for package in ("froster_edge", "froster_edge/bundle", "froster_edge/model", "export", "runtime", "calibration"):
        modules = {p.rsplit("/", 1)[1] for p in tracked if p.startswith(package + "/") and p.count("/") == package.count("/") + 1}
        missing += [f"{package}/{m}" for m in sorted(modules) if m.endswith(".py") and m != "__init__.py" and f"`{m}`" not in layout]
    assert not missing, f"the README's layout does not name: {missing}"
