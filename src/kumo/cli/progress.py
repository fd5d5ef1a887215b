"""Progress for long work (uploads, downloads, conversions, builds), on stderr.

    with progress_bar("Uploading cirros.qcow2", total=size) as bar:
        client.upload(..., progress=bar.advance)

On a terminal this is a Rich bar with bytes done, rate and ETA. When stderr is not a
terminal (CI logs, pipes) it prints a plain line every 10% (or every 10 s when the
total is unknown) and one when done, so logs stay readable. stdout is left alone so
`-f json` output can still be piped.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import IO, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from kumo.cli.output import human_size

Unit = Literal["bytes", "percent", "steps"]


class Bar:
    """What a caller drives: advance by an amount, or set the absolute figure."""

    def __init__(self, total: int | None, unit: Unit) -> None:
        self.total = total
        self.unit = unit
        self.completed = 0
        self.description = ""

    def advance(self, amount: int) -> None:
        self.update(self.completed + amount)

    def update(self, completed: int) -> None:
        self.completed = completed
        self._render()

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._render()

    def describe(self, description: str) -> None:
        self.description = description
        self._render()

    def _render(self) -> None:  # overridden by the two renderers
        pass

    def finish(self) -> None:
        pass


class RichBar(Bar):
    def __init__(self, progress: Progress, task: TaskID, total: int | None, unit: Unit) -> None:
        super().__init__(total, unit)
        self.progress = progress
        self.task = task

    def _render(self) -> None:
        self.progress.update(
            self.task, completed=self.completed, total=self.total,
            description=self.description or None,
        )


class PlainBar(Bar):
    """Line-per-step progress for logs: every 10% or every 10 seconds."""

    STEP_PERCENT = 10
    STEP_SECONDS = 10.0

    def __init__(self, description: str, total: int | None, unit: Unit, out: IO[str]) -> None:
        super().__init__(total, unit)
        self.description = description
        self.out = out
        self.started = time.monotonic()
        self.last_percent = 0
        self.last_time = self.started

    def _figure(self) -> str:
        if self.unit == "bytes":
            done = human_size(self.completed)
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = f", {human_size(int(self.completed / elapsed))}/s"
            total = f" of {human_size(self.total)}" if self.total else ""
            return f"{done}{total}{rate}"
        if self.unit == "steps":
            return f"{self.completed}" + (f"/{self.total}" if self.total else "")
        return ""

    def _render(self) -> None:
        now = time.monotonic()
        if self.total:
            percent = min(100, self.completed * 100 // self.total)
            if percent // self.STEP_PERCENT <= self.last_percent // self.STEP_PERCENT:
                return
            self.last_percent = percent
            figure = self._figure()
            self._line(f"{self.description}: {percent}%" + (f" ({figure})" if figure else ""))
        elif now - self.last_time >= self.STEP_SECONDS:
            self._line(f"{self.description}: {self._figure()}")
        else:
            return
        self.last_time = now

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.total and self.last_percent >= 100:
            return
        figure = self._figure()
        self._line(f"{self.description}: done" + (f" ({figure})" if figure else "")
                   + f" in {elapsed:.1f} s")


def _columns(unit: Unit) -> list[ProgressColumn]:
    columns: list[ProgressColumn] = [
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
    ]
    if unit == "bytes":
        columns += [DownloadColumn(binary_units=True), TransferSpeedColumn()]
    elif unit == "steps":
        columns += [MofNCompleteColumn()]
    else:
        columns += [TaskProgressColumn()]
    return [*columns, TimeElapsedColumn(), TimeRemainingColumn()]


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int | None = None,
    *,
    unit: Unit = "bytes",
    file: IO[str] | None = None,
    enabled: bool = True,
) -> Iterator[Bar]:
    """A progress display for the duration of the block; yields the Bar to drive.

    `unit` is "bytes" (transfers), "percent" (total=100, e.g. qemu-img convert -p)
    or "steps" (a build's stages). `enabled=False` shows nothing (for --quiet).
    """
    out = file or sys.stderr
    if not enabled:
        yield Bar(total, unit)
        return
    if not out.isatty():
        plain = PlainBar(description, total, unit, out)
        yield plain
        plain.finish()
        return
    with Progress(*_columns(unit), console=Console(file=out), transient=False) as progress:
        task = progress.add_task(description, total=total)
        bar = RichBar(progress, task, total, unit)
        bar.description = description
        yield bar
