"""Progress of long runs, with an estimate of the time left.

Every driver (``kocc benchmark``'s tabular, image and toy-suite runners, ``kocc
surface``'s phases) counts its units of work with a :class:`Progress`:

    progress = Progress("tabular", total=n_datasets * runs)
    for ...:
        progress.start("thyroid run 1")
        ...
        progress.done()

On a terminal (standard error is a TTY and ``--quiet`` was not given) it keeps
one status line up to date (``tabular 3/18 thyroid run 1 · 1m20s elapsed ·
about 6m40s left``) and prints a line per finished unit. Otherwise it writes
nothing to the terminal; the CLI hands it the run's log file
(:func:`reporting`), which gets one plain line per finished unit either way.

The estimate is the mean time of the finished units times the units left
(:func:`eta_seconds`): no estimate before the first unit finishes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

_settings: dict = {"quiet": False, "log": None}


@contextlib.contextmanager
def reporting(*, quiet: bool = False, log: TextIO | None = None) -> Iterator[None]:
    """While the block runs, new :class:`Progress` reporters stay off the
    terminal if ``quiet`` and write their finished units to ``log``."""
    saved = dict(_settings)
    _settings.update(quiet=quiet, log=log)
    try:
        yield
    finally:
        _settings.update(saved)


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Time left if the ``total - done`` units left take the mean time of the
    ``done`` ones (``elapsed / done`` each); ``None`` before any is done."""
    if done <= 0:
        return None
    return max(total - done, 0) * elapsed / done


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _terminal() -> TextIO | None:
    """The real standard error if it is a terminal (the CLI copies
    ``sys.stderr`` into its log; a status line redrawn in place has no place
    there)."""
    stream = sys.__stderr__
    try:
        return stream if stream is not None and stream.isatty() else None
    except (AttributeError, ValueError):
        return None


class Progress:
    """Counts ``total`` units of work of a run named ``label`` and reports them.

    Args:
        label: what runs (``tabular``, ``surface``...), the start of each line.
        total: the number of units.
        live: where the status line goes; default: the terminal, unless quiet
            (:func:`reporting`) or standard error is not a TTY.
        log: where a line per finished unit goes; default: the run's log set
            by :func:`reporting` (none outside the CLI).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        live: TextIO | None | bool = True,
        log: TextIO | None | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, given {total}")
        self.label, self.total, self.done_units = label, int(total), 0
        if live is True:
            live = None if _settings["quiet"] else _terminal()
        if log is True:
            log = _settings["log"]
        self.live, self.log = live or None, log or None
        self._clock = clock
        self._start = clock()
        self._unit_start = self._start
        self.unit: str | None = None

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def eta(self) -> float | None:
        """Seconds left (estimate); ``None`` before the first unit is done.

        The units left take the mean time of the finished ones; the time the
        running unit has already spent is deducted from its share (down to 0).
        """
        at_done = self._unit_start - self._start  # elapsed when the last finished
        eta = eta_seconds(at_done, self.done_units, self.total)
        if eta is None or self.unit is None:
            return eta
        mean = at_done / self.done_units
        running = self._clock() - self._unit_start
        return max(eta - running, eta - mean)

    def status(self) -> str:
        """``label i/total unit · elapsed · about ... left``."""
        parts = [f"{self.label} {min(self.done_units + 1, self.total)}/{self.total}"]
        if self.unit:
            parts[0] += f" {self.unit}"
        parts.append(f"{format_duration(self.elapsed)} elapsed")
        eta = self.eta()
        parts.append(
            "estimating time left"
            if eta is None
            else f"about {format_duration(eta)} left"
        )
        return " · ".join(parts)

    def start(self, unit: str) -> None:
        """A unit begins (shown in the status line)."""
        self.unit = unit
        self._unit_start = self._clock()
        if self.live is not None:
            self.live.write("\r\033[K" + self.status())
            self.live.flush()

    def next(self, unit: str) -> None:
        """Finish the current unit (if one is running) and start ``unit``."""
        if self.unit is not None:
            self.done()
        self.start(unit)

    def skip(self, units: int = 1) -> None:
        """``units`` planned units will not run (e.g. no surface to mesh)."""
        self.total = max(self.done_units, self.total - units)

    def done(self, unit: str | None = None) -> str:
        """A unit is finished; returns (and reports) its line."""
        unit = unit or self.unit or f"unit {self.done_units + 1}"
        took = self._clock() - self._unit_start
        self.done_units += 1
        self.unit = None
        self._unit_start = self._clock()
        eta = self.eta()
        line = (
            f"{self.label} {self.done_units}/{self.total} {unit} done in "
            f"{format_duration(took)}; {format_duration(self.elapsed)} elapsed"
        )
        if eta is not None and self.done_units < self.total:
            line += f", about {format_duration(eta)} left"
        if self.live is not None:
            self.live.write("\r\033[K" + line + "\n")
            self.live.flush()
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()
        return line
