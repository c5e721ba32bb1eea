"""The ``data`` marker (tests/conftest.py): skip on a fresh clone, fail on bad data.

Each test runs a tiny data-marked test file under this suite's own conftest
(pytester, in process) with ``KOCC_DATA_DIR`` unset, empty or pointing nowhere.
"""

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

TINY_DATA_TEST = """
import pytest

from kocc.datasets.tabular import load_tabular


@pytest.mark.data
def test_reads_wbc():
    x, _ = load_tabular("wbc")
    assert x.shape[0] > 0


def test_without_data():
    assert 1 + 1 == 2
"""


@pytest.fixture
def tiny_suite(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_tiny=TINY_DATA_TEST)
    return pytester


def test_data_test_is_skipped_with_a_reason_naming_the_variable(
    tiny_suite, monkeypatch
):
    monkeypatch.delenv("KOCC_DATA_DIR", raising=False)
    result = tiny_suite.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    (line,) = [ln for ln in result.outlines if ln.startswith("SKIPPED")]
    assert "KOCC_DATA_DIR" in line and "test_tiny.py" in line


def test_data_test_fails_naming_the_missing_file_when_the_folder_is_incomplete(
    tiny_suite, monkeypatch, tmp_path
):
    empty = tmp_path / "data"
    (empty / "odds").mkdir(parents=True)
    monkeypatch.setenv("KOCC_DATA_DIR", str(empty))
    result = tiny_suite.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*FileNotFoundError*wbc*"])


def test_data_test_fails_when_the_variable_names_no_directory(
    tiny_suite, monkeypatch, tmp_path
):
    monkeypatch.setenv("KOCC_DATA_DIR", str(tmp_path / "nowhere"))
    result = tiny_suite.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*KOCC_DATA_DIR=*nowhere* is not a directory*"])
