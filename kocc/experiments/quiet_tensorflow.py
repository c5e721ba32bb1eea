"""TensorFlow, quiet: what a ``kocc`` command does so that its terminal holds
its own lines and not TensorFlow's.

* :func:`quiet_environment` sets TensorFlow's native log level
  (``TF_CPP_MIN_LOG_LEVEL``, unless the user set it) and its Python logger's.
* :func:`quiet_tensorflow_import` drops the native lines TensorFlow's C++
  libraries write to file descriptor 2 as they load, which no log level
  silences, and marks the command's child processes
  (:data:`QUIET_TENSORFLOW_IMPORT_ENV`) so that they do the same
  (:mod:`kocc.experiments.tabular_worker`).

Used by :mod:`kocc.experiments.cli` and the processes it starts; imports
nothing heavy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Iterator

#: A line of TensorFlow's native (C++) logging: absl (``I0000 00:00:17.. 123
#: port.cc:153] ...``), the older TF format (``2025-01-01 10:00:00.1: I
#: file.cc:12] ...``), absl's pre-initialization notice, and the second line
#: of the CPU-feature notice.
_NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|To enable the following instructions: )"
)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Drop TensorFlow's native log lines written to file descriptor 2.

    Some lines are written by TensorFlow's C++ libraries as they load, before
    absl logging is initialized, and ``TF_CPP_MIN_LOG_LEVEL`` does not silence
    them (oneDNN notice, "Could not find cuda drivers", "failed call to cuInit"
    on a machine without a GPU). While the block runs, file descriptor 2 goes
    to a temporary file; afterwards every other line is written to the real
    standard error, in order.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(True)
            kept = "".join(line for line in lines if not _NATIVE_LOG_LINE.match(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


class _QuietTensorFlowImport:
    """Imports ``tensorflow``, wherever that happens first, under
    :func:`_native_stderr_filtered` (a one-shot ``sys.meta_path`` finder)."""

    def find_spec(self, name: str, path=None, target=None):
        if name != "tensorflow":
            return None
        self.remove()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module) -> None:
            with _native_stderr_filtered():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module
        return spec

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


#: Set to ``"1"`` by :func:`quiet_tensorflow_import` for the processes a
#: command starts (:mod:`kocc.experiments.tabular_worker`): they import
#: TensorFlow as quietly as the command does.
QUIET_TENSORFLOW_IMPORT_ENV = "KOCC_QUIET_TENSORFLOW_IMPORT"


@contextlib.contextmanager
def quiet_tensorflow_import(verbose: bool) -> Iterator[None]:
    """While the block runs, a first ``import tensorflow`` drops TensorFlow's
    native start-up lines (unless ``verbose``); so does the first import of
    the child processes started meanwhile (:data:`QUIET_TENSORFLOW_IMPORT_ENV`)."""
    if verbose:
        yield
        return
    os.environ[QUIET_TENSORFLOW_IMPORT_ENV] = "1"
    if "tensorflow" in sys.modules:
        yield
        return
    hook = _QuietTensorFlowImport()
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        hook.remove()


def user_set_tf_log_level() -> bool:
    from kocc.backend import USER_SET_TF_LOG_LEVEL

    return USER_SET_TF_LOG_LEVEL


def quiet_environment(verbose: bool) -> None:
    """TensorFlow's native logging: everything with ``--verbose``; else only
    fatal errors. A ``TF_CPP_MIN_LOG_LEVEL`` the user set is left alone (and
    TensorFlow's start-up lines are then not filtered either). TensorFlow's
    Python logger shows errors only, unless ``--verbose``: its warnings are
    about its own internals (a benchmark's predict functions, one per
    network built, "triggered tf.function retracing")."""
    if not verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if user_set_tf_log_level():
        return
    if verbose:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        # errors that matter reach the user as Python exceptions
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
