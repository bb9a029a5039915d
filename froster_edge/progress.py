"""The one progress bar of long jobs (evaluation, training): rich on stderr, or nothing.

Stdout stays for results, so the bar and the lines printed beside it go to stderr. Disabled (quiet
runs, ranks other than 0), every call is a no-op except `print`.

See docs/cli.md.
"""

from __future__ import annotations


class ProgressBar:
    """`description | bar | done/total | info | elapsed | remaining`, updated by `advance` or `update`."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int = 0):
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task(description, total=total, completed=completed, info="")
        self.bar.start()

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def update(self, completed: int, description: str | None = None, info: str | None = None) -> None:
        if self.bar is not None:
            fields = {k: v for k, v in (("description", description), ("info", info)) if v is not None}
            self.bar.update(self.task, completed=completed, **fields)

    def print(self, text: str) -> None:
        """A log line above the bar (plain stdout print when the bar is off)."""
        if self.bar is not None:
            self.bar.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
