"""Shared fixtures: tiny randomly initialised open_clip configs and the real example clips."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "examples" / "clips"
TINY_MODEL = ROOT / "configs" / "models" / "tiny-vit.json"
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"../shared/data/{sub} is not present on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_model_cfg() -> dict:
    return json.loads(TINY_MODEL.read_text())


@pytest.fixture
def tiny_config():
    from froster_edge.config import StudentConfig

    return StudentConfig(model_name=str(TINY_MODEL), pretrained=None, num_frames=4, image_size=64)


@pytest.fixture
def tiny_student(tiny_config):
    from froster_edge.model.factory import create_student

    torch.manual_seed(0)
    return create_student(tiny_config).eval()


@pytest.fixture(scope="session")
def example_clips() -> list[dict]:
    with open(CLIPS / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["path"] = CLIPS / row["file"]
    return rows


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle of the tiny student (T=4, 64 px, 2 streams per call) whose manifest names the saved
    student directory as its source (the torch backend rebuilds it from there)."""
    from froster_edge.config import StudentConfig
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions
    from froster_edge.model.checkpoint import save_student
    from froster_edge.model.factory import create_student
    from froster_edge.prompts import read_class_texts

    root = tmp_path_factory.mktemp("tiny_bundle")
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=str(TINY_MODEL), pretrained=None, num_frames=4, image_size=64)).eval()
    save_student(student, root / "student")
    export_bundle(student, root / "bundle", read_class_texts(CLIPS / "classes.txt"), [CLIPS / "stgcn_clean_and_jerk.mp4"],
                  ExportOptions(streams=2, max_parity_clips=1), source={"student": str(root / "student")})
    return root / "bundle"


class Collect:
    """A decision sink that keeps every decision (pipeline tests)."""

    def __init__(self):
        self.decisions = []

    def emit(self, d):
        self.decisions.append(d)

    def close(self):
        pass
