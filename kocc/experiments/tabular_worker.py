"""One data set of a tabular benchmark, trained in a process of its own.

XLA keeps every compiled program until its process exits, about 400 to 820
memory maps per OCSDF network (docs/training.md), so a
``training.jit_compile`` run of the tabular benchmark would exhaust
``vm.max_map_count`` after some 70 to 150 networks. The benchmark therefore
trains each data set of such a run in a fresh Python process
(:func:`run_dataset_in_process`): the maps go back to the system when it
exits, and a run of any number of data sets holds at most one data set's
programs at a time.

The child runs :func:`main` of this module in the same Python. It reads the job
(the data set, the validated recipe, the output folder, the parent's warning
filters and TensorFlow's log level) as one pickle on its standard input, and
answers on its standard output, which it keeps for that channel alone
(anything printed goes to standard error), with length-prefixed pickles: log
lines, progress, warnings, and last the data set's result or the error that
stopped it. The parent passes each on (its log, its progress, its warnings)
and raises the child's error as its own, so a recipe error reads the same as
in one process. Seeds are per run and per network, so the figures equal
those of training in the parent.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parent does not import TensorFlow for this module
    from kocc.experiments.progress import Progress
    from kocc.experiments.tabular_benchmark import (
        DatasetResult,
        TabularBenchmarkConfig,
    )

_HEADER = struct.Struct("!Q")  # the length of the pickle that follows


def _send(channel: IO[bytes], kind: str, payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    channel.write(_HEADER.pack(len(data)) + data)
    channel.flush()


def _receive(channel: IO[bytes]) -> tuple[str, Any] | None:
    """The next message, or None at the end of the stream (the child exited)."""
    header = channel.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = channel.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_dataset_in_process(
    name: str,
    config: TabularBenchmarkConfig,
    log: Callable[[str], None],
    out_dir: Path,
    progress: Progress | None = None,
) -> tuple[DatasetResult, list[dict[str, Any]]]:
    """Train and score data set ``name`` of ``config`` in a child process.

    Args:
        name: the data set (one of ``config.datasets``).
        config: the validated recipe.
        log: receives every log line of the child, as it comes.
        out_dir: the run's folder (the child writes the training curves there).
        progress: told of each run's start and end, as the child reports them.

    Returns:
        What :func:`kocc.experiments.tabular_benchmark.run_dataset` returns:
        the data set's result and its rows for ``<name>_runs.csv``.

    Raises:
        Exception: the child's error, as raised there (a recipe or data error
            is a ``ValueError`` or an ``OSError``, as in one process).
        RuntimeError: the child died before it reported (a signal, a crash):
            the message names the data set and how the process ended.
    """
    tf_log_level = logging.getLogger("tensorflow").level
    job = (name, config, str(out_dir), list(warnings.filters), tf_log_level)
    # kocc as installed, else from where this process imported it (appended:
    # nothing of the interpreter's own path is shadowed)
    source = str(Path(__file__).resolve().parents[2])
    start = f"import sys; sys.path.append({source!r}); from {__name__} import main"
    child = subprocess.Popen(
        [sys.executable, "-c", f"{start}; sys.exit(main())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    outcome: tuple[str, Any] | None = None
    try:
        child.stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        child.stdin.close()
        while (message := _receive(child.stdout)) is not None:
            kind, payload = message
            if kind == "log":
                log(payload)
            elif kind == "progress":
                if progress is not None:
                    method, args = payload
                    getattr(progress, method)(*args)
            elif kind == "warning":
                category, text = payload
                warnings.showwarning(text, category, __file__, 0)
            else:  # "result" or "error", the last message
                outcome = message
        code = child.wait()
    finally:
        if child.poll() is None:  # the parent was interrupted or failed
            child.kill()
            child.wait()
        child.stdout.close()
    if outcome is None:
        raise RuntimeError(
            f"the process training data set {name!r} {_ended(code)} before it "
            "reported its result"
        )
    kind, payload = outcome
    if kind == "error":
        raise payload
    return payload


class _ProgressToParent:
    """The child's progress: each call (``start(unit)``, ``done()``) is made
    on the parent's :class:`~kocc.experiments.progress.Progress`."""

    def __init__(self, channel: IO[bytes]) -> None:
        self._channel = channel

    def __getattr__(self, method: str) -> Callable[..., None]:
        return lambda *args: _send(self._channel, "progress", (method, args))


def _picklable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a RuntimeError with its traceback."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        text = "".join(traceback.format_exception(err))
        return RuntimeError(f"{type(err).__name__}: {err}\n{text}")


def main() -> int:
    """The child: run the pickled job of standard input, answer on standard
    output (see the module's docstring)."""
    from kocc.experiments.quiet_tensorflow import (
        QUIET_TENSORFLOW_IMPORT_ENV,
        quiet_tensorflow_import,
    )

    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints go to stderr

    def forward(message, category, filename, lineno, file=None, line=None) -> None:
        _send(channel, "warning", (category, str(message)))

    try:
        # reading the job imports the benchmark, hence TensorFlow
        with quiet_tensorflow_import(
            os.environ.get(QUIET_TENSORFLOW_IMPORT_ENV) != "1"
        ):
            name, config, out_dir, filters, tf_log_level = pickle.load(sys.stdin.buffer)
            from kocc.experiments.tabular_benchmark import run_dataset
        warnings.filters[:] = filters
        logging.getLogger("tensorflow").setLevel(tf_log_level)
        warnings.showwarning = forward
        result = run_dataset(
            name,
            config,
            lambda text: _send(channel, "log", text),
            Path(out_dir),
            _ProgressToParent(channel),
        )
        _send(channel, "result", result)
        return 0
    except BaseException as err:  # noqa: BLE001 - every error goes to the parent
        _send(channel, "error", _picklable(err))
        return 1
    finally:
        channel.close()
