"""The metrics endpoint's text, checked by Prometheus's own linter (`promtool check metrics`,
Debian's prometheus package) where it is installed, and always by the exposition format's rule
written here: a `quantile` label only on a summary's samples, `le` only on a histogram's."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from froster_edge.runtime.options import RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline

from .helpers import CLIPS

pytest.importorskip("prometheus_client", reason="prometheus-client is not installed (pip install 'froster-edge[site]')")


def exposition_problems(text: str) -> list[str]:
    """Samples whose labels their family's TYPE does not allow (the text format's rule)."""
    types: dict[str, str] = {}
    problems = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            family = next((f for f in (name, re.sub(r"_(count|sum|bucket|total|created)$", "", name)) if f in types), None)
            kind = types.get(family or "", "untyped")
            if re.search(r'[{,]quantile="', line) and kind != "summary":
                problems.append(f"{name}: a quantile label on a {kind}")
            if re.search(r'[{,]le="', line) and kind != "histogram":
                problems.append(f"{name}: an le label on a {kind}")
            if family is None:
                problems.append(f"{name}: no TYPE line")
    return problems


def test_the_metrics_pass_promtool_and_latency_is_a_summary(tiny_bundle):
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry

    from froster_edge.runtime.site.metrics import RunCollector

    options = RunOptions(sources=[str(CLIPS / "stgcn_clean_and_jerk.mp4")], backend="ort-cpu", max_decisions=3,
                         sampling=SamplingOptions(hop=1, fps=4.0))
    pipeline = Pipeline(tiny_bundle, options, [])
    pipeline.run()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(pipeline))
    text = generate_latest(registry).decode()
    assert "# TYPE froster_edge_stage_seconds summary" in text
    quantiles = [line for line in text.splitlines() if line.startswith("froster_edge_stage_seconds{") and "quantile" in line]
    assert {re.search(r'quantile="([0-9.]+)"', q).group(1) for q in quantiles} == {"0.5", "0.95", "0.99"}
    assert exposition_problems(text) == []
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus): checked by the format's rule only")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
