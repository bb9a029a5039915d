"""The CLI's one policy: shared flags mean one thing, choices are checked at parse time, exit codes.

In-process through click's test runner (usage errors, --help) and through the console entry point
`main` (helpers.cli: exit codes of the project's exceptions); each command's tests check the same
codes end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from froster_edge.cli import EXIT_CODES, app
from froster_edge.errors import ConfigError, MissingCapability

from .helpers import assert_one_line_error, cli

COMMANDS = typer.main.get_command(app).commands
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_has_an_example_and_the_exit_codes(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "Example" in text and " ".join(EXIT_CODES.split()) in text


def _params(flag: str) -> dict:
    return {name: p for name, cmd in COMMANDS.items() for p in cmd.params if flag in p.opts}


@pytest.mark.parametrize("flag", ["--student", "--model", "--pretrained", "--frames", "--json", "--classes"])
def test_a_shared_flag_has_one_type_one_default_and_one_help(flag):
    params = _params(flag)
    assert len(params) >= 2, f"{flag} is used by {sorted(params)} only"
    kinds = {(p.type_descriptor.annotation, p.min, p.max, p.multiple, p.help) for p in params.values()}
    assert len(kinds) == 1, {name: (p.type_descriptor.annotation, p.help) for name, p in params.items()}
    if flag != "--classes":  # required in predict/export/labels, optional in eval (which has --protocol)
        assert len({repr(p.default) for p in params.values()}) == 1


def test_videos_and_labels_mean_one_thing_in_every_command():
    from froster_edge.cli.options import VIDEOS_HELP

    videos = {**_params("--videos"), **{f"{n} --held-out": p for n, p in _params("--held-out").items()}}
    assert {"export", "calibrate", "calibrate --held-out"} <= set(videos)
    for name, p in videos.items():  # one repeatable type, one resolver (gather_videos), one description of the forms
        assert p.multiple and p.type_descriptor.annotation == list[Path] and p.help.endswith(VIDEOS_HELP), name
    assert {name: "label table" in p.help.lower() for name, p in _params("--labels").items()} == {"run": True}
    result = invoke("eval", "--data", "list.txt", "--labels", "names.txt")  # eval's check file is --check-classes now
    assert result.exit_code == 2 and "No such option" in result.output, result.output


def test_every_output_flag_is_dash_o_and_a_path():
    params = _params("--out")
    assert {"export", "labels", "import-froster", "average", "train"} <= set(params)
    for name, p in params.items():
        assert set(p.opts) == {"-o", "--out"} and p.type_descriptor.annotation is Path, name


@pytest.mark.parametrize("args, choices", [
    (["run", "--bundle", "b", "--source", "0", "--backend", "fastest"], ["ort-cpu", "trt-int8", "torch"]),
    (["run", "--bundle", "b", "--source", "0", "--smoothing", "median"], ["ema", "mean", "none"]),
    (["bench", "--bundle", "b", "--backend", "ort-gpu"], ["ort-cuda", "ort-cpu-int8"]),
    (["export", "-o", "b", "--classes", "c", "--trt-route", "onnx"], ["tensorrt", "ort-trt"]),
    (["calibrate", "--bundle", "b", "--method", "histogram"], ["minmax", "entropy", "percentile"]),
    (["calibrate", "--bundle", "b", "--ops", "most"], ["linear", "all"]),
    (["calibrate", "--bundle", "b", "--variant", "u4s4"], ["u8s8", "u8s8-7bit", "s8s8-7bit", "u8u8"]),
])
def test_an_unknown_choice_is_a_usage_error_naming_the_choices(args, choices):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert all(f"'{c}'" in result.output for c in choices), result.output


def test_json_writes_a_file_or_prints_with_dash_and_the_old_flag_form_is_refused(tmp_path):
    printed = invoke("info", "--json", "-")
    assert printed.exit_code == 0, printed.output
    env = json.loads(printed.stdout)  # stdout holds the JSON alone
    written = invoke("info", "--json", str(tmp_path / "info.json"))
    assert written.exit_code == 0 and "froster-edge" in written.stdout  # the readable table
    assert json.loads((tmp_path / "info.json").read_text()).keys() == env.keys()
    assert invoke("info", "--json").exit_code == 2  # the old flag form: "requires an argument"
    swallowed = invoke("export", "-o", str(tmp_path / "b"), "--classes", "c", "--json", "--trt")
    assert swallowed.exit_code == 2 and "--trt" in swallowed.output and not (tmp_path / "--trt").exists()


@pytest.mark.parametrize("error, code", [(ConfigError("bad --hop"), 1), (MissingCapability("no GPU here"), 3)])
def test_main_turns_project_errors_into_one_line_and_their_code(monkeypatch, error, code):
    def fail():
        raise error

    monkeypatch.setattr("froster_edge.cli.base.app", fail)
    result = cli()
    assert result.returncode == code
    assert result.stderr.strip().splitlines() == [f"froster-edge: error: {error}"]


@pytest.mark.parametrize("args, message", [
    (["labels", "--classes", "examples/clips/classes.txt"], "give exactly one of --student and --bundle"),
    (["calibrate", "--bundle", "b", "--videos", "v", "--trt", "--variant", "u8s8"], "--trt quantizes activations to symmetric int8"),
    (["calibrate", "--bundle", "b", "--confidence"], "--confidence needs --val LIST"),
    (["average", "r1", "r2", "--epochs", "2..", "-o", "x"], "--epochs takes exactly one run directory"),
])
def test_a_bad_flag_combination_exits_1_with_one_line_before_any_work(args, message):
    result = cli(*args)
    assert_one_line_error(result, 1, message)
    assert result.stderr.startswith("froster-edge: error: ")
