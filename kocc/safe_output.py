"""Outputs that are complete or absent: atomic writes, locks, refusals.

Every file or folder kocc writes goes through this module, so that

* a reader never sees a half-written output: a file is written to a temporary
  sibling, flushed to disk (``fsync``) and renamed over its final name
  (:func:`atomic_file`); a folder is filled as a temporary sibling, given a
  completion marker and renamed into place (:func:`output_directory`);
* an interrupted or failed write leaves nothing behind: the temporary sibling
  is removed on any exception, ``KeyboardInterrupt`` included (and ``SIGTERM``
  within :func:`terminate_as_interrupt`). A process that
  is killed outright (``SIGKILL``, power loss) can leave a sibling named
  ``.NAME.partial-PID-XXXX``: it is marked partial by its name, never read as
  the output, and removed by the next :func:`output_directory` on that path;
* nothing is lost: an existing non-empty output is refused unless
  ``overwrite=True`` (:class:`OutputExistsError`), and an output that is one
  of the inputs, or would replace a folder holding one, is always refused
  (:class:`OutputIsInputError`);
* two processes writing one folder cannot both succeed: :func:`output_lock`
  holds an exclusive lock (``fcntl.flock``) on ``.NAME.lock`` next to the
  output for the whole run; the second process gets :class:`OutputLockedError`
  at once, naming the holder's pid. The kernel releases a ``flock`` when its
  process dies, so a crash leaves no stale lock: a leftover ``.NAME.lock`` file
  that nobody holds is simply taken by the next run. Locks need POSIX
  (``fcntl``; TensorFlow's native Windows builds are discontinued, use WSL2).
  On network file systems, ``flock`` is only as reliable as the server's
  locking.

The errors are ``ValueError`` subclasses (bad usage or input: ``kocc`` exits
with code 2), and :class:`OutputExistsError` / :class:`OutputLockedError` are
also ``FileExistsError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

#: File written last into a folder published by :func:`output_directory`.
COMPLETION_MARKER = ".kocc-complete"
#: Infix of the temporary siblings that hold an output being written.
PARTIAL_INFIX = ".partial-"

#: The interrupts (SIGINT, SIGTERM) received inside
#: :func:`terminate_as_interrupt` blocks so far: their number and the cause of
#: the last (see :func:`interrupts_received`).
_interrupts = {"count": 0, "cause": ""}

PathLike = str | os.PathLike


class OutputError(ValueError):
    """An output cannot be written where asked. ``path`` is the output."""

    def __init__(self, message: str, path: PathLike) -> None:
        super().__init__(message)
        self.path = Path(path)


class OutputExistsError(OutputError, FileExistsError):
    """The output already exists (non-empty) and ``overwrite`` is not set."""


class OutputIsInputError(OutputError):
    """The output is one of the inputs (or a folder holding one): never allowed."""


class OutputPathError(OutputError):
    """The output path cannot hold this kind of output (a folder where a file
    goes, a file where a folder goes, a parent that is a file)."""


class OutputLockedError(OutputError, FileExistsError):
    """Another process is writing the same output. ``pid`` is its id, if known."""

    def __init__(self, message: str, path: PathLike, pid: int | None) -> None:
        super().__init__(message, path)
        self.pid = pid


def _is_non_empty(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(
    path: PathLike,
    kind: str = "file",
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
) -> Path:
    """Check that ``path`` may receive an output; nothing is written.

    Args:
        path: the output file or folder.
        kind: ``"file"`` or ``"directory"``.
        overwrite: allow replacing an existing non-empty output.
        inputs: files or folders the run reads; the output may neither be one
            of them nor (for a folder output) contain one.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OutputIsInputError: ``path`` is an input or a folder holding one.
        OutputPathError: ``path`` is a folder where a file goes (or the
            reverse), or a parent of ``path`` is not a folder.
        OutputExistsError: ``path`` exists, is non-empty and ``overwrite`` is
            false.
    """
    if kind not in ("file", "directory"):
        raise ValueError(f"kind must be 'file' or 'directory', got {kind!r}")
    path = Path(path)
    for item in inputs:
        item = Path(item)
        if _same_file(path, item):
            raise OutputIsInputError(
                f"output {str(path)!r} is also an input ({str(item)!r}): writing "
                "it would destroy the input; choose another output path",
                path,
            )
        if kind == "directory" and path.resolve() in item.resolve().parents:
            raise OutputIsInputError(
                f"output folder {str(path)!r} holds the input {str(item)!r}: "
                "replacing the folder would destroy the input; choose another "
                "output folder",
                path,
            )
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(
                f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder",
                path,
            )
    if kind == "file" and path.is_dir():
        raise OutputPathError(
            f"cannot write the file {str(path)!r}: it is a folder; give a file name",
            path,
        )
    if kind == "directory" and path.exists() and not path.is_dir():
        raise OutputPathError(
            f"cannot write the folder {str(path)!r}: it is a file", path
        )
    if not overwrite and _is_non_empty(path):
        what = "folder" if kind == "directory" else "file"
        full = " and is not empty" if kind == "directory" else ""
        raise OutputExistsError(
            f"{what} {str(path)!r} already exists{full}"
            ": refusing to overwrite it (pass overwrite=True, or --overwrite, to "
            "replace it)",
            path,
        )
    return path


def _partial_sibling(path: Path, suffix: str = "") -> str:
    """Name of a fresh temporary sibling: ``.NAME.partial-PID-RANDOM[suffix]``."""
    return f".{path.name}{PARTIAL_INFIX}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """``fsync`` every file and folder under ``path`` (written by other code)."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(Path(root))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _publish_file(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite``, never replace a file."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and fails if path exists: no clobbering
    except FileExistsError:
        raise OutputExistsError(
            f"file {str(path)!r} was created by someone else while this output "
            "was being written: refusing to overwrite it",
            path,
        ) from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise OutputExistsError(
                f"file {str(path)!r} was created by someone else while this "
                "output was being written: refusing to overwrite it",
                path,
            ) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(
    path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> Iterator[Path]:
    """A temporary sibling path that becomes ``path`` if the block succeeds.

    For writers that take a file name (``np.savez``, ``model.save``): the
    temporary name keeps ``path``'s suffix. On success the file is synced to
    disk and renamed to ``path``; on any exception (``KeyboardInterrupt``
    included) it is removed and ``path`` is untouched.

    Args:
        path: the final file.
        overwrite, inputs: see :func:`check_output`.

    Raises:
        OutputError: the errors of :func:`check_output`, checked before the
            block runs and, without ``overwrite``, again when publishing.
    """
    path = check_output(path, "file", overwrite, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_partial_sibling(path, "".join(path.suffixes)))
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to {str(path)!r}")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _publish_file(tmp, path, overwrite)
        _fsync_directory(path.parent)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_file(
    path: PathLike,
    mode: str = "w",
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    **open_kwargs: Any,
) -> Iterator[IO]:
    """Open a file whose content appears at ``path`` only when the block succeeds.

    Example:
        >>> with atomic_file("report.json", overwrite=True) as handle:
        ...     handle.write(text)

    Args:
        path: the final file.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        overwrite, inputs: see :func:`check_output`.
        open_kwargs: passed to ``open`` (e.g. ``encoding``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path, overwrite, inputs) as tmp:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle


def write_text(
    path: PathLike, text: str, overwrite: bool = False, inputs: Iterable[PathLike] = ()
) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_file`."""
    with atomic_file(path, "w", overwrite, inputs) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(
    path: PathLike,
    data: bytes,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_file`."""
    with atomic_file(path, "wb", overwrite, inputs) as handle:
        handle.write(data)
    return Path(path)


def lock_path(path: PathLike) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _lock_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output ``path`` for the block.

    The lock is ``fcntl.flock`` on ``.NAME.lock`` beside ``path``, which holds
    the owner's pid. It is not waited for: a second writer fails at once. The
    file is removed on release; as the kernel releases the lock of a dead
    process, a leftover lock file is never stale.

    Raises:
        OutputLockedError: another process holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_holder(fd)
            os.close(fd)
            holder = f"process {pid}" if pid else "another process"
            raise OutputLockedError(
                f"{str(path)!r} is being written by {holder} (lock {str(lock)!r}): "
                "two runs cannot write one output; wait for it or choose another",
                path,
                pid,
            ) from None
        # the holder we waited for may have removed the file: lock the live one
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def partial_siblings(path: PathLike) -> list[Path]:
    """Temporary siblings of ``path`` left by interrupted writers."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}{PARTIAL_INFIX}*"))


def remove_partial(path: PathLike) -> list[Path]:
    """Remove what interrupted writers left beside ``path``; returns what went.

    Only call it while holding :func:`output_lock` on ``path`` (as
    :func:`output_directory` does): then no live writer owns a partial sibling.
    """
    removed = partial_siblings(path)
    for item in removed:
        _remove(item)
    return removed


def is_complete(path: PathLike) -> bool:
    """Whether ``path`` is a folder published whole by :func:`output_directory`."""
    return (Path(path) / COMPLETION_MARKER).is_file()


def read_completion(path: PathLike) -> dict:
    """The completion record of a published folder (pid, time, kocc version).

    Raises:
        FileNotFoundError: if the folder carries no completion marker.
    """
    marker = Path(path) / COMPLETION_MARKER
    if not marker.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} carries no {COMPLETION_MARKER}: it is not a complete "
            "kocc output (interrupted, or written by something else)"
        )
    return json.loads(marker.read_text(encoding="utf-8"))


def _kocc_version() -> str:
    try:
        return importlib.metadata.version("kocc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _write_marker(folder: Path) -> None:
    record = {
        "pid": os.getpid(),
        "finished": time.time(),
        "kocc_version": _kocc_version(),
    }
    with open(folder / COMPLETION_MARKER, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def output_directory(
    path: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    marker: bool = True,
) -> Iterator[Path]:
    """Fill a folder that appears at ``path`` whole, or not at all.

    The block receives a temporary sibling folder to write into, while an
    :func:`output_lock` on ``path`` is held. On success every file in it is
    synced to disk, :data:`COMPLETION_MARKER` is written last (if ``marker``)
    and the folder is renamed to ``path``. With ``overwrite``, an existing
    ``path`` is first renamed aside and deleted after the new folder is in
    place, so a reader sees the old folder or the new one, never a mix (for an
    instant, neither). On any exception, ``KeyboardInterrupt`` included, the
    temporary folder is removed and ``path`` is untouched.

    Example:
        >>> with output_directory("runs/moons", overwrite=False) as work:
        ...     model.save(work / "model.keras")

    Args:
        path: the final folder.
        overwrite, inputs: see :func:`check_output`.
        marker: write :data:`COMPLETION_MARKER` (a SavedModel may skip it).

    Raises:
        OutputLockedError: another process is writing ``path``.
        OutputError: the errors of :func:`check_output`, checked before the
            block runs and again when publishing.
    """
    path = Path(path)
    check_output(path, "directory", overwrite, inputs)
    with output_lock(path):
        remove_partial(path)
        check_output(path, "directory", overwrite, inputs)  # may have changed
        work = path.with_name(_partial_sibling(path))
        work.mkdir()  # mode 0o777 & ~umask, as the published folder should be
        old: Path | None = None
        try:
            yield work
            _fsync_tree(work)
            if marker:
                _write_marker(work)
            check_output(path, "directory", overwrite, inputs)
            if path.is_dir() and any(path.iterdir()):
                old = path.with_name(_partial_sibling(path, ".old"))
                os.rename(path, old)
            try:
                os.rename(work, path)  # replaces an empty folder, never a full one
            except OSError as err:
                if old is not None:
                    os.rename(old, path)
                    old = None
                raise OutputExistsError(
                    f"cannot publish the folder {str(path)!r}: {err}", path
                ) from err
            _fsync_directory(path.parent)
        finally:
            _remove(work)
            if old is not None:
                _remove(old)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn ``SIGTERM`` into ``KeyboardInterrupt`` for the block, and count
    the interrupts.

    Python's default ``SIGTERM`` ends the process without unwinding, so the
    clean-up of :func:`atomic_path` and :func:`output_directory` would not run
    and a ``.NAME.partial-…`` sibling would stay. Inside this block a
    ``SIGTERM`` (``kill PID``, a job scheduler's time limit) unwinds like
    Ctrl-C (``SIGINT``). Both are counted (:func:`interrupts_received`), so
    that code calling a dependency that catches ``BaseException`` can raise a
    swallowed interrupt again (:func:`kocc.extras.require`). Outside the main
    thread (where Python cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        cause = (
            "" if signum == signal.SIGINT else f"signal {signal.Signals(signum).name}"
        )
        _interrupts["count"] += 1
        _interrupts["cause"] = cause
        raise KeyboardInterrupt(cause)

    previous = {
        sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupts_received() -> tuple[int, str]:
    """How many ``SIGINT`` / ``SIGTERM`` arrived inside
    :func:`terminate_as_interrupt` blocks, and the cause of the last (``""``
    for Ctrl-C, ``"signal SIGTERM"``): the ``KeyboardInterrupt`` message."""
    return _interrupts["count"], _interrupts["cause"]
