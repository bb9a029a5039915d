"""Shared fixtures: tiny randomly initialised open_clip configs and the real example clips.

Plain helpers (paths, the tiny student's builder, the CLI in this process or a subprocess) are in helpers.py.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
from pathlib import Path

import pytest
import torch

from .helpers import CLASSES, CLIPS, ROOT, SHARED_DATA, TINY_MODEL, TINY_RECIPE, make_student, shared_data, tiny_student_config

__all__ = ["CLIPS", "ROOT", "SHARED_DATA", "TINY_MODEL", "shared_data"]  # older imports from conftest still work

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _no_sigchld_handler_left_behind():
    """A DataLoader with workers installs a SIGCHLD handler for the rest of the process. Once an
    OpenVINO test has run AMX code in this process, the kernel cannot fit a signal frame on the
    alternate signal stack any more and kills pytest with SIGSEGV (si_code SI_KERNEL) at the next
    child's exit: the suite keeps SIGCHLD at its default between tests."""
    yield
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _library_logging_reaches_caplog():
    """A CLI run in this process installs its stderr handler and stops propagation: undo it after
    each test, so the next one's caplog sees the library's lines."""
    yield
    logger = logging.getLogger("froster_edge")
    for handler in [h for h in logger.handlers if getattr(h, "_froster_cli", False)]:
        logger.removeHandler(handler)
    logger.propagate = True


@pytest.fixture(scope="session")
def tiny_model_cfg() -> dict:
    return json.loads(TINY_MODEL.read_text())


@pytest.fixture
def tiny_config():
    return tiny_student_config()


@pytest.fixture
def tiny_student(tiny_config):
    return make_student(config=tiny_config)


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
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions
    from froster_edge.model.checkpoint import save_student

    root = tmp_path_factory.mktemp("tiny_bundle")
    student = make_student()
    save_student(student, root / "student")
    export_bundle(student, root / "bundle", CLASSES, [CLIPS / "stgcn_clean_and_jerk.mp4"],
                  ExportOptions(streams=2, max_parity_clips=1), source={"student": str(root / "student")})
    return root / "bundle"


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The tiny student trained on three of the bundled clips until it tells them apart, exported
    and checked (tests/trained.py): (bundle, decisions a plain run makes per camera). Built once."""
    from .trained import train_bundle

    return train_bundle(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def tiny_batch():
    """Four real clips of the tiny recipe, as its training loader makes them (epoch 0):
    (recipe, class names, frames (4, T, 3, H, W), labels)."""
    from froster_edge.data import VideoDataset, collate_clips
    from froster_edge.train.config import load_recipe
    from froster_edge.train.loop import prepare_data

    cfg = load_recipe(TINY_RECIPE)
    data = prepare_data(cfg)
    ds = VideoDataset(data.items, num_frames=cfg.student.num_frames, image_size=cfg.student.image_size, train=True,
                      views=1, seed=0)
    batch = collate_clips([ds[i] for i in range(4)])
    return cfg, data.classes, batch["frames"][:, 0], batch["labels"]
