"""The progress reporter of long runs (kocc/experiments/progress.py)."""

import io
import sys

import pytest

from kocc.experiments import progress as progress_module
from kocc.experiments.progress import Progress, eta_seconds, format_duration, reporting


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_eta_is_the_mean_unit_time_times_the_units_left():
    assert eta_seconds(elapsed=30.0, done=3, total=9) == pytest.approx(60.0)
    assert eta_seconds(elapsed=30.0, done=9, total=9) == 0.0
    assert eta_seconds(elapsed=5.0, done=0, total=9) is None


def test_durations_read_as_seconds_minutes_hours():
    assert format_duration(42.4) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(7620) == "2h07m"


def test_status_and_finished_lines_carry_elapsed_time_and_estimate():
    clock, live, log = FakeClock(), io.StringIO(), io.StringIO()
    bar = Progress("tabular", 4, live=live, log=log, clock=clock)
    bar.start("thyroid run 1/2")
    assert "estimating time left" in bar.status()
    clock.now += 10
    line = bar.done()
    assert line == (
        "tabular 1/4 thyroid run 1/2 done in 10s; 10s elapsed, about 30s left"
    )
    bar.start("thyroid run 2/2")
    clock.now += 5  # 10 s per unit so far: 30 s left, less 5 s of the running one
    assert bar.eta() == pytest.approx(25.0)
    clock.now += 25  # longer than the mean: the 2 units after it are left
    assert bar.status() == (
        "tabular 2/4 thyroid run 2/2 · 40s elapsed · about 20s left"
    )
    bar.done()
    assert bar.eta() == pytest.approx(40.0)  # 20 s per unit, 2 left
    assert log.getvalue().splitlines()[1].startswith("tabular 2/4 thyroid run 2/2")
    # the terminal gets the status lines, redrawn in place, and the finished ones
    assert "\r\033[Ktabular 1/4 thyroid run 1/2 · 0s elapsed" in live.getvalue()
    assert live.getvalue().count("\n") == 2


def test_last_unit_has_no_estimate_and_skip_shortens_the_run():
    clock = FakeClock()
    bar = Progress("surface", 3, live=None, log=None, clock=clock)
    bar.start("ocsdf fit")
    clock.now += 2
    bar.next("ocsdf grid evaluation")  # finishes the fit
    assert bar.done_units == 1
    clock.now += 2
    bar.done()
    bar.skip()  # no marching cubes: the level set was empty
    assert bar.total == 2 and bar.eta() == 0.0
    assert bar.done_units == bar.total


def test_terminal_gets_a_status_line_only_when_stderr_is_a_tty(monkeypatch):
    log = io.StringIO()
    for tty in (True, False):
        terminal = FakeTerminal(tty)
        monkeypatch.setattr(sys, "__stderr__", terminal)
        with reporting(quiet=False, log=log):
            bar = Progress("images", 1)
            bar.start("mnist normal class 0")
            bar.done()
        assert bool(terminal.getvalue()) is tty
    # one plain line per finished unit in the run's log, either way
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert all(
        line.startswith("images 1/1 mnist normal class 0 done in") for line in lines
    )
    assert "\r" not in log.getvalue()


def test_quiet_keeps_the_terminal_silent_and_still_logs(monkeypatch):
    terminal, log = FakeTerminal(True), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    with reporting(quiet=True, log=log):
        bar = Progress("toy suite", 2)
        bar.start("two_moons")
        bar.done()
    assert terminal.getvalue() == ""
    assert log.getvalue().startswith("toy suite 1/2 two_moons done in")
    # outside the CLI's run: no log, and the settings are restored
    assert progress_module._settings == {"quiet": False, "log": None}


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        Progress("x", -1)
