"""Check a site file, then run it for a while, from Python.

    python examples/site_run.py examples/site.yaml --decisions 20

The site file is read and every key checked before anything opens (a bad one is a ConfigError
naming the file and the key); then the cameras run through the same call as `froster-edge run
--config FILE`, here stopped after `--decisions` decisions, and the stats are returned.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from froster_edge.runtime.command import RunRequest, run
from froster_edge.runtime.options import RUN_DEFAULTS
from froster_edge.runtime.site.config import Site, load_site


def check(site_file: str) -> Site:
    """The site file read and checked; nothing opened."""
    return load_site(Path(site_file), RUN_DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site")
    parser.add_argument("--decisions", type=int, default=20, help="stop after this many decisions")
    args = parser.parse_args(argv)

    site = check(args.site)
    print(f"{args.site}: bundle {site.bundle}, cameras {', '.join(c.name for c in site.run.cameras)}")
    options = replace(site.run, max_decisions=args.decisions)
    return run(RunRequest(site.bundle, options, jsonl=True, site=site, http=site.http, mqtt=site.mqtt))


if __name__ == "__main__":
    main()
