"""A missing optional dependency names the extra and the pip command."""

import sys

import pytest

from kocc.extras import OPTIONAL_MODULES, install_hint, require


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
