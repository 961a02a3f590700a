"""Progress with ETA. Measurement code only sees an `advance(n)` callback.

On a terminal: rich's live bars (on stderr). Elsewhere (a log file, CI, `2>&1 | tee`) a live bar cannot draw and rich
would print nothing until the end, so `PlainProgress` writes a plain line per task every GOODPRIOR_PROGRESS_EVERY
seconds (default 30), and one when a task that ran that long finishes: a long run is never silent.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _Task:
    description: str
    total: float
    completed: float
    started: float
    start_completed: float

    def line(self, now: float, finished: bool = False) -> str:
        total = max(self.total, 1e-9)
        elapsed = now - self.started
        rate = (self.completed - self.start_completed) / elapsed if elapsed > 0 else 0.0
        eta = f", eta {_clock((self.total - self.completed) / rate)}" if rate > 0 and self.completed < self.total else ""
        return (f"{self.description.strip()}: {self.completed:,.0f}/{self.total:,.0f} "
                f"({100 * self.completed / total:.0f}%), {_clock(elapsed)} {'in all' if finished else 'elapsed' + eta}")


class PlainProgress:
    """The part of rich's `Progress` goodprior uses (add_task, advance, update, remove_task), as plain lines."""

    def __init__(self, every: float | None = None, write: Callable[[str], None] | None = None):
        self.every = every if every is not None else float(os.environ.get("GOODPRIOR_PROGRESS_EVERY", "30"))
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.tasks: dict[int, _Task] = {}
        self._next_id, self._last = 0, time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        for task_id in list(self.tasks):
            self.remove_task(task_id)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        task_id, self._next_id = self._next_id, self._next_id + 1
        self.tasks[task_id] = _Task(description, float(total or 0), float(completed), time.monotonic(), float(completed))
        return task_id

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        task = self.tasks[task_id]
        task.total = float(total) if total is not None else task.total
        task.completed = float(completed) if completed is not None else task.completed
        task.description = description or task.description
        if advance:
            self.advance(task_id, advance)
        else:
            self._maybe_report()

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.tasks[task_id].completed += advance
        self._maybe_report()

    def remove_task(self, task_id: int) -> None:
        task = self.tasks.pop(task_id)
        now = time.monotonic()
        if now - task.started >= self.every:
            self.write(task.line(now, finished=True))

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            for task in self.tasks.values():
                self.write(task.line(now))


def make_progress() -> Progress | PlainProgress:
    console = Console(stderr=True)
    if not console.is_terminal:
        return PlainProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), transient=False, console=console)


@contextmanager
def bar(description: str, total: int, done: int = 0) -> Iterator[Callable[[int], None]]:
    with make_progress() as progress:
        task = progress.add_task(description, total=total, completed=done)
        yield lambda n: progress.advance(task, n)
