"""A missing optional dependency names the extra and the pip command."""

import sys

import pytest

from kocc.extras import OPTIONAL_MODULES, install_hint, require
from kocc.safe_output import terminate_as_interrupt


def test_require_returns_an_installed_module():
    assert require("skimage.measure").__name__ == "skimage.measure"


def test_missing_extra_raises_import_error_naming_the_pip_command(monkeypatch):
    # None in sys.modules makes Python's import raise ImportError
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError) as error:
        require("trimesh", "surface meshes")
    message = str(error.value)
    assert message.startswith("surface meshes needs trimesh")
    assert "pip install 'kocc[surfaces]'" in message


def test_missing_extra_names_the_calling_module_by_default(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(
        ImportError, match=r"^tests?\.?.*needs PyYAML.*kocc\[experiments\]"
    ):
        require("yaml")


def test_importing_a_module_of_an_extra_fails_with_the_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "foolbox", None)
    monkeypatch.delitem(sys.modules, "kocc.attacks", raising=False)
    with pytest.raises(
        ImportError, match=r"kocc.attacks needs foolbox.*kocc\[attacks\]"
    ):
        import kocc.attacks  # noqa: F401


def test_unknown_module_is_not_an_optional_dependency():
    with pytest.raises(KeyError, match="not an optional dependency"):
        install_hint("numpy")
    assert install_hint("skimage.measure") == "pip install 'kocc[surfaces]'"
    assert {extra for _, extra in OPTIONAL_MODULES.values()} == {
        "surfaces",
        "attacks",
        "data",
        "plots",
        "experiments",
    }


_SWALLOWING_PACKAGE = """
import os, signal, time
try:  # as trimesh wraps its optional imports
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the handler runs here and raises KeyboardInterrupt
except BaseException as error:
    caught = error
"""


def test_an_interrupt_that_the_imported_package_swallows_is_raised_again(
    tmp_path, monkeypatch
):
    (tmp_path / "swallower.py").write_text(_SWALLOWING_PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(OPTIONAL_MODULES, "swallower", ("swallower", "surfaces"))
    with pytest.raises(KeyboardInterrupt) as interrupt:
        with terminate_as_interrupt():
            require("swallower")
    assert str(interrupt.value) == ""  # Ctrl-C, as the CLI reports it
    # the package did catch it: without the check the import would return
    assert isinstance(sys.modules["swallower"].caught, KeyboardInterrupt)
    monkeypatch.delitem(sys.modules, "swallower")
