"""The README and docs/: a front page of bounded size, no path outside the repository, links that
resolve, and commands that the CLI accepts as written (parsed against the typer app itself).

The Python examples are tested by running them (tests/test_examples.py), not from here.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer.main

from froster_edge.cli import app

from .helpers import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README = 15_000

# Pages other branches are writing in parallel: links to them may dangle until those branches are
# merged. Remove each entry once its page is in docs/.
PAGES_BEING_WRITTEN: set[str] = set()
# Commands and flags being added on other branches (`run --config FILE --check`):
# their lines are checked once the app has them. Remove the entries once it does.
COMMANDS_BEING_ADDED: set[str] = set()
FLAGS_BEING_ADDED: dict[str, set[str]] = {}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"(?<![.\w])\.\.[/\\]")  # a path starting with ../ (not the ellipsis of ".../event")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def pages() -> list:
    return [README, *sorted(DOCS.glob("*.md"))]


def page_ids() -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in pages()]


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= MAX_README, f"README.md has {len(text)} characters (at most {MAX_README}): move detail to docs/"


@pytest.mark.parametrize("page", pages(), ids=page_ids())
def test_no_path_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    hits = [line for line in text.splitlines() if OUTSIDE.search(line)]
    assert not hits, f"{page.name}: a path outside the repository: {hits[:3]}"


@pytest.mark.parametrize("page", pages(), ids=page_ids())
def test_no_merge_conflict_left(page):
    markers = [line for line in page.read_text(encoding="utf-8").splitlines()
               if re.match(r"^(<{7}|={7}|>{7})( |$)", line)]
    assert not markers, f"{page.name}: merge conflict markers: {markers}"


@pytest.mark.parametrize("page", pages(), ids=page_ids())
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    missing = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() and not (path.parent == DOCS.resolve() and path.name in PAGES_BEING_WRITTEN):
            missing.append(target)
    assert not missing, f"{page.name}: links to files that do not exist: {missing}"


def shown_commands(text: str) -> list[list[str]]:
    """Every `froster-edge ...` (or `torchrun ... -m froster_edge.cli ...`) command in the page's code
    blocks, continuation lines joined and shell comments dropped, as argument lists after the
    program name."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if "froster-edge " not in line and "froster_edge.cli " not in line:
                continue
            try:
                words = shlex.split(re.sub(r"\$\([^)]*\)", "VALUE", line), comments=True)  # $(cat token): one word
            except ValueError as e:
                raise AssertionError(f"not a shell command line: {line!r} ({e})") from None
            for program in ("froster-edge", "froster_edge.cli"):
                if program in words:
                    before = words[:words.index(program)]
                    # the program, after environment assignments; or what torchrun / python -m runs
                    if all("=" in w for w in before) or (before and before[0] in ("torchrun", "python", "python3")):
                        commands.append(words[words.index(program) + 1:])
                    break
    return commands


def check_command(words: list[str]) -> str | None:
    """None when the typer app parses `words` (a command, its flags, the right number of
    arguments); else why not. Values are not converted (paths in examples need not exist)."""
    group = typer.main.get_command(app)
    if not words or words[0] not in group.commands:
        return None if words and words[0] in COMMANDS_BEING_ADDED else f"no such command: {words[:1]}"
    name, args = words[0], words[1:]
    command = group.commands[name]
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    pending = FLAGS_BEING_ADDED.get(name, set()) - known
    args = [a for a in args if a not in pending]
    parent = group.make_context("froster-edge", [name], resilient_parsing=True)
    parser = command.make_parser(type(parent)(command, parent=parent, info_name=name))
    try:
        _, extra, _ = parser.parse_args(list(args))  # click's own parser: options and arguments, no conversion
    except Exception as e:  # its errors: no such option, an option without its value
        return f"{name}: {type(e).__name__}: {e}"
    if extra:
        return f"{name}: unexpected arguments {extra}"
    return None


@pytest.mark.parametrize("page", pages(), ids=page_ids())
def test_commands_shown_are_real(page):
    commands = shown_commands(page.read_text(encoding="utf-8"))
    bad = [(" ".join(words), why) for words in commands if (why := check_command(words))]
    assert not bad, f"{page.name}: commands the CLI does not accept: {bad}"


# Flags the pages name in prose that belong to other programs: --help (every command), pip's
# --extra-index-url, pytest's --continue-on-collection-errors, `python -m froster_edge.train.fewshot
# --shots`, `benchmarks/as_cpu.py --check` (the benchmark scripts' own flags are only on
# benchmarks.md, which this check leaves out).
OTHER_FLAGS = {"--help", "--extra-index-url", "--continue-on-collection-errors", "--shots", "--check"}


@pytest.mark.parametrize("page", [p for p in pages() if p.name != "benchmarks.md"],
                         ids=[i for i in page_ids() if not i.endswith("benchmarks.md")])
def test_flags_named_in_prose_exist(page):
    """A `--flag` in the text (outside code blocks) is a flag of some command: a flag removed or
    renamed is found on every page that still names it."""
    group = typer.main.get_command(app)
    known = {opt for c in group.commands.values() for p in c.params for opt in (*p.opts, *p.secondary_opts)}
    prose = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    named = {f for span in re.findall(r"`([^`\n]+)`", prose) for f in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span)}
    assert not named - known - OTHER_FLAGS, f"{page.name} names flags no command has: {sorted(named - known - OTHER_FLAGS)}"


def test_readme_shows_the_main_commands():
    shown = {words[0] for words in shown_commands(README.read_text(encoding="utf-8")) if words}
    assert {"train", "export", "calibrate", "run", "search"} <= shown, shown


def test_shown_commands_are_found():
    text = "```\nFROSTER_EDGE_HTTP_TOKEN=$(cat token) froster-edge run --http 0.0.0.0:8080  # a comment\n" \
           "torchrun --nproc_per_node 8 -m froster_edge.cli train a.yaml \\\n    --resume\n" \
           "video ─► froster-edge export ─► bundle\n```\n"
    assert shown_commands(text) == [["run", "--http", "0.0.0.0:8080"], ["train", "a.yaml", "--resume"]]


def test_the_command_check_can_fail():
    """The parser check refuses what the CLI would refuse: an unknown command or flag, a flag
    without its value, a stray argument."""
    assert check_command(["run", "--bundle", "b", "--source", "x"]) is None
    assert check_command(["rnu", "--bundle", "b"])
    assert check_command(["run", "--bundle", "b", "--colour", "red"])
    assert check_command(["export", "--student", "s", "--classes"])
    assert check_command(["export", "--student", "s", "--classes", "c", "-o", "b", "extra"])


def test_cli_page_lists_every_flag():
    """docs/cli.md has a section per command whose table names exactly that command's flags."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    problems = []
    for name, command in group.commands.items():
        section = re.search(rf"^## `{re.escape(name)}`\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        if section is None:
            problems.append(f"no section for {name}")
            continue
        cells = re.findall(r"^\| `(-[^`]*)`", section.group(1), re.M)  # "-o, --out PATH", "--fp16 / --no-fp16"
        shown = {piece.split()[0] for cell in cells for piece in re.split(r", | / ", cell)}
        flags = {opt for p in command.params if p.name != "help" and p.opts[0].startswith("-")
                 for opt in (*p.opts, *p.secondary_opts)}
        if shown != flags:
            problems.append(f"{name}: missing {sorted(flags - shown)}, not flags {sorted(shown - flags)}")
    assert not problems, problems
