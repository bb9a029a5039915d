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
