"""Safe outputs: atomic files and folders, refusals, locks, two writers at once."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kocc import safe_output
from kocc.safe_output import (
    COMPLETION_MARKER,
    OutputExistsError,
    OutputIsInputError,
    OutputLockedError,
    OutputPathError,
    atomic_file,
    atomic_path,
    check_output,
    is_complete,
    output_directory,
    output_lock,
    partial_siblings,
    read_completion,
    write_text,
)


def _folder(path: Path) -> Path:
    """``path`` made a new, empty folder."""
    path.mkdir()
    return path


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_file_appears_whole_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "report.json"
    with atomic_file(out) as handle:
        handle.write("{")
        assert not out.exists()  # nothing visible before the block ends
        handle.write("}")
    assert out.read_text() == "{}"
    assert _siblings(out) == ["report.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = write_text(tmp_path / "scores.csv", "old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(out, overwrite=True) as handle:
            handle.write("new, half-written")
            raise RuntimeError("boom")
    assert out.read_text() == "old\n"
    assert _siblings(out) == ["scores.csv"]


def test_keyboard_interrupt_removes_the_partial_file(tmp_path):
    out = tmp_path / "scores.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out) as tmp:
            np.savez(tmp, a=np.zeros(3))
            assert tmp.name.startswith(".scores.npz.partial-")
            assert tmp.suffix == ".npz"  # writers that append a suffix keep it
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_refused_unless_overwrite(tmp_path):
    out = write_text(tmp_path / "scores.csv", "old\n")
    with pytest.raises(OutputExistsError, match=r"scores\.csv.*already exists"):
        write_text(out, "new\n")
    assert out.read_text() == "old\n"
    write_text(out, "new\n", overwrite=True)
    assert out.read_text() == "new\n"


def test_output_refused_if_created_while_writing(tmp_path):
    out = tmp_path / "scores.csv"
    with pytest.raises(OutputExistsError, match="created by someone else"):
        with atomic_file(out) as handle:
            handle.write("mine")
            out.write_text("theirs")  # another writer got there first
    assert out.read_text() == "theirs"
    assert _siblings(out) == ["scores.csv"]


def test_output_equal_to_an_input_is_always_refused(tmp_path):
    data = write_text(tmp_path / "in.csv", "1,2\n")
    alias = tmp_path / "sub" / ".." / "in.csv"
    for path in (data, alias):
        with pytest.raises(OutputIsInputError, match=r"in\.csv.*also an input"):
            check_output(path, overwrite=True, inputs=[data])
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    with pytest.raises(OutputIsInputError):
        write_text(link, "x", overwrite=True, inputs=[data])
    assert data.read_text() == "1,2\n"


def test_folder_holding_an_input_is_refused(tmp_path):
    run = _folder(tmp_path / "run")
    recipe = write_text(run / "recipe.yaml", "kind: toy\n")
    with pytest.raises(OutputIsInputError, match="holds the input"):
        with output_directory(run, overwrite=True, inputs=[recipe]):
            pass
    assert recipe.read_text() == "kind: toy\n"


def test_paths_that_cannot_hold_the_output_are_named(tmp_path):
    folder = _folder(tmp_path / "folder")
    a_file = write_text(tmp_path / "file.txt", "x")
    with pytest.raises(OutputPathError, match="it is a folder"):
        check_output(folder, "file", overwrite=True)
    with pytest.raises(OutputPathError, match=r"file\.txt.* is a file, not a folder"):
        check_output(a_file / "out.csv", "file")
    with pytest.raises(OutputPathError, match="it is a file"):
        check_output(a_file, "directory", overwrite=True)
    with pytest.raises(ValueError, match="kind must be"):
        check_output(folder, "folder")


def test_output_directory_publishes_a_complete_folder(tmp_path):
    out = tmp_path / "run"
    plain = _folder(tmp_path / "plain")
    with output_directory(out) as work:
        assert work.parent == tmp_path and work != out
        (work / "model.bin").write_bytes(b"weights")
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == [COMPLETION_MARKER, "model.bin"]
    assert is_complete(out)
    assert read_completion(out)["pid"] == os.getpid()
    # readable by others as any folder made here (a temporary folder is not)
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    plain.rmdir()
    assert _siblings(out) == ["run"]  # no temporary, no lock file left


def test_non_empty_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    with output_directory(out) as work:
        (work / "metrics.json").write_text("old")
    with pytest.raises(OutputExistsError, match="already exists and is not empty"):
        with output_directory(out):
            pytest.fail("the block must not run")
    assert (out / "metrics.json").read_text() == "old"
    empty = _folder(tmp_path / "empty")
    with output_directory(empty) as work:  # an empty folder holds nothing to lose
        (work / "a").write_text("a")
    assert (empty / "a").read_text() == "a"


def test_overwrite_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "run"
    with output_directory(out) as work:
        (work / "metrics.json").write_text("old")
        (work / "recipe.yaml").write_text("old")
    with output_directory(out, overwrite=True) as work:
        (work / "model.keras").write_text("new")
    # no old file survives next to the new ones
    assert sorted(p.name for p in out.iterdir()) == [COMPLETION_MARKER, "model.keras"]
    assert _siblings(out) == ["run"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_folder_leaves_the_old_one_untouched(tmp_path, error):
    out = tmp_path / "run"
    with output_directory(out) as work:
        (work / "metrics.json").write_text("old")
    with pytest.raises(error):
        with output_directory(out, overwrite=True) as work:
            (work / "model.keras").write_text("half")
            raise error
    assert sorted(p.name for p in out.iterdir()) == [COMPLETION_MARKER, "metrics.json"]
    assert _siblings(out) == ["run"]


def test_partial_folder_of_a_killed_writer_is_marked_and_cleaned(tmp_path):
    out = tmp_path / "run"
    # what a writer killed by SIGKILL leaves: its temporary sibling
    dead = _folder(tmp_path / f".run{safe_output.PARTIAL_INFIX}99999-abcd-x")
    (dead / "model.keras").write_text("half")
    assert partial_siblings(out) == [dead]
    assert not is_complete(dead)
    with pytest.raises(FileNotFoundError, match="not a complete kocc output"):
        read_completion(dead)
    with output_directory(out) as work:
        (work / "a").write_text("a")
    assert _siblings(out) == ["run"]


def test_a_held_lock_refuses_a_second_writer_and_names_its_pid(tmp_path):
    out = tmp_path / "run"
    with output_lock(out) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()}") as err:
            with output_directory(out):
                pytest.fail("the block must not run")
        assert err.value.pid == os.getpid()
        assert isinstance(err.value, FileExistsError | ValueError)
    assert not lock.exists()
    with output_directory(out) as work:  # released: the next writer proceeds
        (work / "a").write_text("a")


def test_a_lock_file_left_by_a_dead_process_is_not_stale(tmp_path):
    out = tmp_path / "run"
    safe_output.lock_path(out).write_text("99999\n")  # left, nobody holds it
    with output_directory(out) as work:
        (work / "a").write_text("a")
    assert is_complete(out)


_WRITER = textwrap.dedent("""
    import importlib.util, sys, time
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("safe_output", sys.argv[1])
    so = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(so)
    out, name, go = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.005)
    try:
        with so.output_directory(out, overwrite=True) as work:
            for part in ("metrics.json", "recipe.yaml", "model.keras"):
                (work / part).write_text(name)
                time.sleep(0.3)
    except so.OutputError as err:
        print(type(err).__name__, err)
        sys.exit(3)
""")


def test_two_processes_cannot_both_write_one_folder(tmp_path):
    """Two writers started together (overwrite=True, where renaming alone would
    not protect): exactly one succeeds and the folder holds only its files."""
    out, go = tmp_path / "run", tmp_path / "go"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                safe_output.__file__,
                str(out),
                name,
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    time.sleep(0.5)
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], results
    loser = next(out for out, _ in results if out)
    assert loser.startswith("OutputLockedError") and "is being written by" in loser
    winner = "first" if procs[0].returncode == 0 else "second"
    contents = {p.name: p.read_text() for p in out.iterdir() if p.name[0] != "."}
    assert contents == dict.fromkeys(
        ("metrics.json", "recipe.yaml", "model.keras"), winner
    )
    assert json.loads((out / COMPLETION_MARKER).read_text())["pid"] in [
        p.pid for p in procs
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "run", "writer.py"]


_TERMINATED = textwrap.dedent("""
    import importlib.util, sys, time
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("safe_output", sys.argv[1])
    so = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(so)
    out = Path(sys.argv[2])
    try:
        with so.terminate_as_interrupt(), so.output_directory(out) as work:
            (work / "model.keras").write_text("half")
            print("writing", flush=True)
            time.sleep(60)
    except KeyboardInterrupt as err:
        print("interrupted:", err, flush=True)
        sys.exit(130)
""")


def test_sigterm_unwinds_and_removes_the_partial_folder(tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "writer.py"
    script.write_text(_TERMINATED)
    proc = subprocess.Popen(
        [sys.executable, str(script), safe_output.__file__, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    assert partial_siblings(out)  # the work folder exists while writing
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted: signal SIGTERM" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["writer.py"]
