"""Progress of a benchmark: a rich progress bar in a terminal, or a function told the fraction done
(the dashboard's quick benchmark), or nothing. The engine reports steps; this decides where they go."""

from __future__ import annotations

from typing import Callable


class Progress:
    """A rich progress bar when asked for (True), a function told the fraction done (callable); silent otherwise."""

    def __init__(self, enabled: bool | Callable[[float, str], None], total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar = None
        self._report, self._done = (enabled if callable(enabled) else None), 0

    def __enter__(self) -> "Progress":
        if self.enabled is True:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, description: str) -> None:
        self._done += 1
        if self._report is not None:
            self._report(min((self._done - 1) / self.total, 1.0), description)  # the step just started
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description)

    def skip(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
