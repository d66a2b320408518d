"""Progress of a long job, visible with or without a terminal.

On a terminal (the stream is a TTY) a rich progress bar redraws in place. Anywhere else (CI, ``nohup``,
a cluster job, a log file) a bar would stay silent until the end, so a plain line is printed instead:
on the first update, then every ``every_s`` seconds (default 30; environment variable
``NERFSIM_PROGRESS_EVERY_S`` overrides it), and once at the end::

    train step 120/2000  loss 0.0123  PSNR 21.34  rays/s 5,432  ETA 0:05:12

It lives in `scenes`, the lowest layer, beside the other helpers every layer shares (`scenes.errors`,
`scenes.files`): training in `sim` and the jobs in `tasks` use it without importing upwards.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_EVERY_S = 30.0
EVERY_ENV = "NERFSIM_PROGRESS_EVERY_S"

# Shown fields, in order: (keyword given to `update`, label, format).
FIELDS = (("loss", "loss", "{:.4f}"), ("psnr", "PSNR", "{:.2f}"), ("rays_per_s", "rays/s", "{:,.0f}"),
          ("samples_per_ray", "spl/ray", "{:.0f}"))


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _every_s(every_s: float | None) -> float:
    if every_s is not None:
        return every_s
    try:
        return float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S


class JobProgress:
    """Context manager reporting ``completed / total`` steps and named figures (`FIELDS`).

    ``enabled=False`` shows nothing. ``stream`` defaults to ``sys.stdout`` as it is when entering.
    ``update(completed, eta_s=..., **figures)``: ``eta_s`` is an upper bound the caller knows (e.g.
    the time left of a time budget); the shown ETA is the smaller of it and the steps left at this
    run's rate.
    """

    def __init__(self, label: str, total: int, completed: int = 0, enabled: bool = True,
                 stream: TextIO | None = None, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.enabled = label, total, enabled
        self.completed = self._start_step = completed
        self.every_s = _every_s(every_s)
        self._stream, self._clock = stream, clock
        self._bar: Progress | None = None
        self._figures: dict[str, float] = {}
        self._eta_cap: float | None = None
        self._t0 = self._last_line = 0.0
        self._printed_at: int | None = None

    # ----------------------------------------------------------------------------- context
    def __enter__(self) -> "JobProgress":
        self._stream = self._stream or sys.stdout
        self._t0 = self._clock()
        if self.enabled and _is_tty(self._stream):
            self._bar = _rich_bar(self.label, Console(file=self._stream))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.completed,
                                            figures="", eta=format_duration(math.inf))
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.enabled and self._printed_at != self.completed:
            self._print_line()

    # ------------------------------------------------------------------------------ update
    def update(self, completed: int, eta_s: float | None = None, **figures: float) -> None:
        self.completed, self._eta_cap = completed, eta_s
        self._figures.update(figures)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, figures=self._figures_text(),
                             eta=format_duration(self.eta_s()))
            return
        now = self._clock()
        if self._printed_at is None or now - self._last_line >= self.every_s:
            self._print_line()

    def eta_s(self) -> float:
        """Seconds left: the steps left at this run's rate, capped by the caller's ``eta_s``."""
        done = self.completed - self._start_step
        elapsed = self._clock() - self._t0
        by_rate = (self.total - self.completed) * elapsed / done if done > 0 else math.inf
        return by_rate if self._eta_cap is None else min(by_rate, max(self._eta_cap, 0.0))

    def line(self) -> str:
        """The plain progress line for the current state."""
        parts = [f"{self.label} step {self.completed}/{self.total}", self._figures_text(),
                 f"ETA {format_duration(self.eta_s())}"]
        return "  ".join(p for p in parts if p)

    # ----------------------------------------------------------------------------- private
    def _figures_text(self) -> str:
        return "  ".join(f"{label} {fmt.format(self._figures[key])}"
                         for key, label, fmt in FIELDS if key in self._figures)

    def _print_line(self) -> None:
        print(self.line(), file=self._stream, flush=True)
        self._last_line, self._printed_at = self._clock(), self.completed


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _rich_bar(label: str, console: Console) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[figures]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                    console=console, transient=False)
