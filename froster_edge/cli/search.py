"""`froster-edge search`: typed actions over a run's archive (runtime/site/search.py), torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional, TextIO

import typer

from .base import command
from .options import JsonOut, readable, write_json


@command("search")
def search_cmd(
    archive: Annotated[Path, typer.Option("--archive", help="The archive a run wrote (run --archive FILE.db).")],
    bundle: Annotated[Path, typer.Option("--bundle", help="A bundle of the model that wrote the archive: its text encoder encodes the query.")],
    text: Annotated[Optional[list[str]], typer.Argument(
        help="The action to look for, in words (quote it); more than one compete as a classifier's classes do.",
        show_default=False)] = None,
    query: Annotated[Optional[list[str]], typer.Option("--query", help="Another query (repeatable), as the arguments.")] = None,
    camera: Annotated[Optional[str], typer.Option("--camera", help="Only this camera's decisions.")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only the last 30m, 24h, 7d, ... (s, m, h, d, w).")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="From this UTC date/time (2026-12-07T21:00) or Unix seconds.")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="Up to this UTC date/time or Unix seconds.")] = None,
    top: Annotated[int, typer.Option("--top", help="Time ranges shown per query.", min=1)] = 10,
    hits: Annotated[float, typer.Option(
        "--hits", help="Fraction of the decisions searched that may be hits (at least --top), best scores first.",
        min=0.0, max=1.0)] = 0.05,
    gap: Annotated[float, typer.Option("--gap", help="Hits of one camera at most this many seconds apart merge into one range.",
                                       min=0.0)] = 10.0,
    thumbs: Annotated[Optional[Path], typer.Option(
        "--thumbs", help="Write each range's thumbnail here as <decision id>.jpg (the folder must exist).")] = None,
    json_out: JsonOut = None,
) -> None:
    """Search a site's past for an action typed in words, with no video model run again.

    Every decision's clip embedding was kept by `run --archive`; the query is encoded by the
    bundle's text encoder with the label tables' prompt ensemble and scored against them as the
    classifier would. Consecutive hits of a camera merge into time ranges, best first, with their
    thumbnail and the clip of the action event they belong to.

    Examples:
      froster-edge search "someone climbing a fence" --archive site.db --bundle bundles/b32 --since 24h
      froster-edge search "falling" --query "sitting down" --archive site.db --bundle bundles/b32 --camera back-door
      froster-edge search "arm wrestling" --archive site.db --bundle bundles/b32 --from 2026-12-07T08:00 --json -
    """
    from ..errors import ConfigError
    from ..io import atomic_write_bytes
    from ..runtime.site.search import SearchOptions, connect, search_archive, thumbnail, time_range

    lo, hi = time_range(since, start, end)
    if thumbs is not None and not thumbs.is_dir():
        raise ConfigError(f"--thumbs {thumbs}: no such folder")
    options = SearchOptions(camera=camera, start=lo, end=hi, top=top, hits=hits, gap_s=gap)
    result = search_archive(archive, bundle, [*(text or []), *(query or [])], options)
    if thumbs is not None:
        conn = connect(archive, readonly=True)
        try:
            for q in result["queries"]:
                for r in q["ranges"]:
                    jpeg = thumbnail(conn, r["thumb_id"]) if r["thumb_id"] is not None else None
                    if jpeg is not None:
                        r["thumb"] = str(thumbs / f"{r['thumb_id']}.jpg")
                        atomic_write_bytes(r["thumb"], jpeg)
        finally:
            conn.close()
    print_result(result, readable(json_out))
    write_json(json_out, result)


def print_result(result: dict[str, Any], out: TextIO) -> None:
    several = len(result["queries"]) > 1
    print(f"{result['archive_rows']} decisions searched ({result['score']})", file=out)
    for q in result["queries"]:
        print(f"{q['query']!r}: {len(q['ranges'])} range(s)" if several or not q["ranges"] else f"{q['query']!r}:", file=out)
        for i, r in enumerate(q["ranges"], 1):
            top = ", ".join(f"{n} {s:.0%}" for n, s in r["top"][:3])
            extra = "".join(f"  {key}: {r[key]}" for key in ("thumb", "clip") if r.get(key))
            print(f"  {i:2d}. {r['camera']}  {r['start_utc']} .. {r['end_utc'][11:]}  (media {r['start_media']:.1f}-"
                  f"{r['end_media']:.1f} s, {r['decisions']} decision(s))  score {r['score']:.4f}  run's top: {top}{extra}",
                  file=out)
