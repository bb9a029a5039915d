"""Class texts and the prompt ensemble, including FROSTER's own label files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from froster_edge.errors import ConfigError
from froster_edge.model.student import average_prompts
from froster_edge.prompts import TEMPLATES, ClassText, encode_per_class, prompts_for, read_class_texts

from .helpers import shared_data


def test_templates():
    assert len(TEMPLATES) == 28
    assert len(set(TEMPLATES)) == 28
    assert "a video of a person practicing {}." in TEMPLATES
    assert TEMPLATES[0] == "a photo of {}."
    assert all(t.count("{}") == 1 for t in TEMPLATES)


def test_described_class_prompts_follow_the_reference():
    c = ClassText.parse("Archery: This video shows the sport of archery")
    assert (c.name, c.description) == ("Archery", "This video shows the sport of archery")
    ps = prompts_for(c)
    assert len(ps) == 29
    assert ps[0] == "a photo of Archery. Archery: This video shows the sport of archery"
    assert ps[-1] == "Archery: This video shows the sport of archery"


def test_bare_name_prompts():
    c = ClassText.parse("  arm   wrestling ")
    assert c.name == "arm wrestling" and c.description is None
    ps = prompts_for(c)
    assert ps[13] == "a video of a person practicing arm wrestling."
    assert ps[-1] == "arm wrestling"


def test_read_names_and_json(tmp_path):
    (tmp_path / "n.txt").write_text("yoga\n\narm wrestling\n")
    assert [c.name for c in read_class_texts(tmp_path / "n.txt")] == ["yoga", "arm wrestling"]
    (tmp_path / "c.json").write_text(json.dumps({"1": "B: b desc", "0": "A: a desc"}))
    assert [c.name for c in read_class_texts(tmp_path / "c.json")] == ["A", "B"]


@pytest.mark.parametrize(
    "content,suffix,match",
    [
        ("yoga\nYoga\n", ".txt", "appears twice"),
        ("", ".txt", "no classes"),
        ('{"0": "a", "2": "b"}', ".json", "without gaps"),
        ('{"0": "a",', ".json", "not valid JSON"),
    ],
)
def test_bad_class_files(tmp_path, content, suffix, match):
    path = tmp_path / f"classes{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        read_class_texts(path)


@pytest.mark.parametrize(
    "name,count",
    [("ucf101_rephrased_classes.json", 101), ("k400_rephrased_classes.json", 400),
     ("hmdb_rephrased_classes.json", 51), ("k600_rephrased_classes.json", 600)],
)
def test_froster_label_files_parse(name, count):
    path = shared_data("froster_label_db") / "label_rephrase" / name
    classes = read_class_texts(path)
    assert len(classes) == count
    assert all(c.description for c in classes)


def test_average_prompts_matches_hand_computation():
    feats = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 5.0]]])  # (C=2, P=2, D=2)
    # class 0: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4) -> normalised (2, 1)/sqrt(5)
    want = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    want = want / want.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(average_prompts(feats), want)


@pytest.mark.parametrize("array", [np.array, torch.tensor])
def test_encode_per_class_folds_the_flat_encoding_back_class_by_class(array):
    prompts = [["a0", "a1", "a2"], ["b0", "b1", "b2"]]
    seen = []

    def encode(flat):  # row i of the encoding names the prompt it came from
        seen.append(flat)
        return array([[ord(p[0]), int(p[1]), k] for k, p in enumerate(flat)])

    got = encode_per_class(prompts, encode)
    assert seen == [["a0", "a1", "a2", "b0", "b1", "b2"]]  # one call, class by class
    assert tuple(got.shape) == (2, 3, 3)
    for c, ps in enumerate(prompts):
        for j, p in enumerate(ps):
            assert [int(x) for x in got[c, j]] == [ord(p[0]), int(p[1]), 3 * c + j]
    assert tuple(encode_per_class(prompts, lambda flat: array([0] * len(flat))).shape) == (2, 3)  # 1-D encodings too
    with pytest.raises(ConfigError, match="same number of prompts"):
        encode_per_class([["a0"], ["b0", "b1"]], encode)


def test_class_embeddings_average_all_29_prompts(tiny_student):
    import torch.nn.functional as F

    c = ClassText.parse("Archery: shooting arrows at a target")
    with torch.no_grad():
        got = tiny_student.class_embeddings([c])
        each = F.normalize(tiny_student.clip.encode_text(tiny_student.tokenize(prompts_for(c))), dim=-1)
    torch.testing.assert_close(got[0], F.normalize(each.mean(0), dim=-1), atol=1e-6, rtol=1e-5)


def test_one_duplicate_rule_case_folded_for_class_files_and_label_tables(tmp_path):
    from froster_edge.bundle.label_builder import average_prompts as numpy_average
    from froster_edge.data.lists import read_classes
    from froster_edge.prompts import repeated_name

    assert repeated_name(["walk", "Run", "RUN"]) == (1, 2) and repeated_name(["Straße", "STRASSE"]) == (0, 1)
    assert repeated_name(["walk", "run"]) is None
    (tmp_path / "c.txt").write_text("Straße\nwalk\nSTRASSE\n")
    (tmp_path / "c.csv").write_text("id,name\n0,Straße\n1,STRASSE\n")
    for reader, path in ((read_class_texts, "c.txt"), (read_classes, "c.csv")):
        with pytest.raises(ConfigError, match="appears twice"):
            reader(tmp_path / path)
    feats = torch.randn(3, 4, 5)  # the numpy ensemble average (no torch at runtime) equals the student's
    np.testing.assert_allclose(numpy_average(feats.numpy()), average_prompts(feats).numpy(), atol=1e-6)
