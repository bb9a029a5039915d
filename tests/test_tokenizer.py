"""The bundle's torch-free tokenizer gives open_clip's token ids, on every class list we have."""

from __future__ import annotations

import json

import numpy as np
import pytest

from froster_edge.bundle.tokenizer import ClipTokenizer
from froster_edge.prompts import ClassText, prompts_for

from .helpers import CLIPS, SHARED_DATA

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Ours, written to a tokenizer.json and read back as a bundle's would be, and open_clip's own."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    ClipTokenizer.from_open_clip().save(path)
    return ClipTokenizer.from_file(path), open_clip.tokenizer.SimpleTokenizer()


def _class_texts(path) -> list[str]:
    if path.suffix == ".json":  # {"name": "index"} (Something-Something v2)
        return list(json.loads(path.read_text()))
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _class_list_files() -> list:
    folder = SHARED_DATA / "class_lists"
    files = sorted(p for p in folder.glob("*") if p.suffix in (".txt", ".json")) if folder.is_dir() else []
    return [CLIPS / "classes.txt"] + files


@pytest.mark.parametrize("path", _class_list_files(), ids=lambda p: p.name)
def test_ids_equal_open_clips_on_a_class_list_and_its_prompts(tokenizers, path):
    ours, ref = tokenizers
    names = _class_texts(path)
    assert names, f"{path} holds no classes"
    texts = names + [p for name in names[:10] for p in prompts_for(ClassText.parse(name))]
    for text in texts:
        assert ours.encode(text) == ref.encode(text), text
    assert (ours(texts) == ref(texts).numpy()).all()


def test_the_shared_class_lists_are_present_or_the_reason_is_given():
    if not (SHARED_DATA / "class_lists").is_dir():
        pytest.skip("../shared/data/class_lists is not present: only examples/clips/classes.txt was compared")
    assert len(_class_list_files()) > 1


@pytest.mark.parametrize("text", [
    "Ünïcödé &amp;amp; naïve café", "rock 'n' roll, it's 1999!", "tab\tand  spaces\n", "emoji 🙂 and 中文",
    "<end_of_text> inside", "x" * 300, "",
])
def test_ids_equal_open_clips_on_awkward_text_and_long_text_is_cut_to_end_with_the_end_id(tokenizers, text):
    ours, ref = tokenizers
    assert ours.encode(text) == ref.encode(text)
    row = ours([text])[0]
    assert (row == ref([text]).numpy()[0]).all()
    assert row[0] == ours.sot and ours.eot in row.tolist()


def test_padding_to_the_longest_is_open_clips_ids_cut_after_the_last_end_token(tokenizers):
    """pad_to="longest": the same ids as open_clip's 77-token rows, cut just after the longest
    text's end token (reference: the last non-zero column of open_clip's rows, counted here)."""
    ours, ref = tokenizers
    texts = [_class_texts(CLIPS / "classes.txt")[0], "a video of a person practicing archery in a field.", "yoga", "x" * 300]
    for batch in (texts[:1], texts[:3], texts):
        full = ref(batch).numpy()
        length = max(int(np.nonzero(row)[0].max()) + 1 for row in full)
        got = ours(batch, pad_to="longest")
        assert got.dtype == np.int64 and got.shape == (len(batch), length)
        assert (got == full[:, :length]).all() and not full[:, length:].any()
    assert ours(["yoga"], pad_to="longest").shape == (1, 3)  # start, one id, end
    with pytest.raises(ValueError, match="pad_to"):
        ours(["yoga"], pad_to="max")


def test_a_file_that_is_not_a_tokenizer_is_one_bundle_error(tmp_path):
    from froster_edge.errors import BundleError

    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BundleError, match="not a readable tokenizer file"):
        ClipTokenizer.from_file(tmp_path / "tokenizer.json")
