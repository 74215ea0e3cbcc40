"""The progress of an experiment's grid: cells done, running and failed, and the time left. On a
terminal, a live bar with a line per finished cell above it; otherwise (a log file, CI), one plain
line each time a cell starts or ends."""

from __future__ import annotations

import threading
import time

from ltm.log import console, error, info, progress


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class GridProgress:
    """Told when each cell starts and ends (from the scheduler's threads); shows where the grid is."""

    def __init__(self, total: int):
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        self.bar = progress() if console.is_terminal else None

    def __enter__(self) -> GridProgress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("cells", total=self.total, info=self._counts())
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def _counts(self) -> str:
        return f"{self.done} done, {self.running} running, {self.failed} failed"

    def eta(self) -> str:
        finished = self.done + self.failed
        if not finished:
            return "eta unknown"
        left = (time.perf_counter() - self.started) / finished * (self.total - finished)
        return f"eta {_duration(left)}"

    def cell_started(self, name: str) -> None:
        with self.lock:
            self.running += 1
            self._show(f"start {name}", info)

    def cell_finished(self, name: str, ok: bool, seconds: float, why: str = "") -> None:
        with self.lock:
            self.running -= 1
            if ok:
                self.done += 1
                self._show(f"done {name} in {_duration(seconds)}", info)
            else:
                self.failed += 1
                self._show(f"failed {name} after {_duration(seconds)}: {why}", error)

    def _show(self, event: str, say) -> None:
        finished = self.done + self.failed
        if self.bar is not None:
            self.bar.update(self.task, completed=finished, info=self._counts())
            if not event.startswith("start"):  # above the bar: what ended; the bar says what runs
                say(event)
        else:
            say(f"[{finished}/{self.total}: {self._counts()}, {self.eta()}] {event}")
