"""One console for the whole package: rich output on stderr, progress for long work.

On a terminal progress is a rich bar; when stderr is not one (`make demo > log 2>&1`, a pipe, a
job's log file) a bar would print nothing until the end and then a line cut at 80 columns, so
progress becomes plain lines instead: one when a task starts, one every PLAIN_EVERY_S seconds, and
one, whole, when it ends.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)
PLAIN_EVERY_S = 30.0  # seconds between the plain progress lines of one task


def progress(transient: bool = False) -> Progress | PlainProgress:
    """A progress bar with count, elapsed time and ETA (plain lines off a terminal); `description`
    names the work, the field `info` carries live metrics."""
    if not console.is_terminal:
        return PlainProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


class _Task:
    def __init__(self, description: str, total: float | None, completed: float, visible: bool, info: str):
        self.description, self.total, self.completed, self.visible, self.info = description, total, completed, visible, info
        self.started = self.printed = time.monotonic()
        self.ended = False


class PlainProgress:
    """rich.progress.Progress's add_task / update / advance, written as plain lines."""

    def __init__(self) -> None:
        self.tasks: list[_Task] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task in self.tasks:
            if task.visible and not task.ended and task.completed:
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, visible: bool = True,
                 info: str = "", **fields) -> int:
        self.tasks.append(_Task(description, total, completed, visible, info))
        if visible:
            self._print(self.tasks[-1])
        return len(self.tasks) - 1

    def update(self, task_id: int, total: float | None = None, completed: float | None = None, advance: float | None = None,
               description: str | None = None, visible: bool | None = None, info: str | None = None, **fields) -> None:
        task = self.tasks[task_id]
        task.total = task.total if total is None else total
        task.completed = (task.completed if completed is None else completed) + (advance or 0)
        task.description = description or task.description
        task.info = task.info if info is None else info
        shown = not task.visible and visible
        task.visible = task.visible if visible is None else visible
        done = task.total is not None and task.completed >= task.total
        if task.visible and not task.ended and (shown or done or time.monotonic() - task.printed >= PLAIN_EVERY_S):
            task.ended = done
            self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: _Task) -> None:
        task.printed = now = time.monotonic()
        elapsed = now - task.started
        count = f"{task.completed:,.0f}" + (f"/{task.total:,.0f}" if task.total else "")
        eta = ""
        if task.total and 0 < task.completed < task.total:
            eta = f" eta {timedelta(seconds=round(elapsed * (task.total - task.completed) / task.completed))}"
        line = f"{task.description} {count} {timedelta(seconds=round(elapsed))}{eta}" + (f"  {task.info}" if task.info else "")
        console.print(line, markup=False)


def info(message: str) -> None:
    console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


def error(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
