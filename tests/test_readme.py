"""The README's Python example runs as written, with the tiny model in place of ViT-B/16."""

from __future__ import annotations

import re

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
