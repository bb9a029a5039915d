"""Attacks on `froster-edge run`'s output destinations (issue 31): --stats-json and --events
refuse the site file and the secret files it names (the metrics token) as destinations."""

from __future__ import annotations

import pytest
import yaml

from .helpers import CLIPS, assert_one_line_error, cli

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


@pytest.mark.parametrize("option,target", [("--stats-json", "site.yaml"), ("--events", "site.yaml"),
                                           ("--stats-json", "metrics.token"), ("--events", "metrics.token")])
def test_outputs_onto_the_site_file_or_its_token_file_are_refused(tiny_bundle, tmp_path, option, target):
    token = tmp_path / "metrics.token"
    token.write_text("s3cret-metrics-token-0123456789abcdef\n")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"bundle": str(tiny_bundle), "cameras": [{"name": "a", "source": str(CLIP)}],
                                    "metrics": {"listen": "127.0.0.1:9", "token_file": str(token)}}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_one_line_error(cli("run", "--config", str(site), option, str(tmp_path / target)), 1, "is the input")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written over
