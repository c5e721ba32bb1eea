"""The docs site's griffe extension (docs/tooling/sphinx_roles.py) on a tiny package.

The site is built by ``mkdocs build --strict`` (README's test command, .ci/run);
these tests pin how Sphinx roles and several-names entries are rewritten.
"""

import importlib.util
import logging
import textwrap
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")

TOOLING = Path(__file__).resolve().parents[1] / "docs" / "tooling"


def _load_extension():
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles", TOOLING / "sphinx_roles.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_pkg(tmp_path):
    """A package named tinypkg: two modules whose docstrings use Sphinx roles."""
    pkg = tmp_path / "tinypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Start with :class:`tinypkg.models.Net`."""\n')
    (pkg / "models.py").write_text(textwrap.dedent('''
        """Networks; see :func:`~tinypkg.models.score` and :mod:`tinypkg.gone`."""

        import numpy as np


        class Net:
            """A net scored by :func:`score`, :meth:`_private` and
            :class:`np.ndarray`; :math:`f(x)` at 10:sup:`3`."""

            def _private(self):
                pass


        def score(a, b):
            """Score.

            Args:
                a, b: two arrays,
                    same shape.
            """
    '''))
    roles = _load_extension()
    return griffe.load(
        "tinypkg",
        search_paths=[tmp_path],
        allow_inspection=False,
        extensions=griffe.load_extensions(roles.SphinxRoles(package="tinypkg")),
    )


def test_tinypkg_targets_become_cross_references_and_others_code(tiny_pkg):
    assert (
        tiny_pkg.docstring.value
        == "Start with [`tinypkg.models.Net`][tinypkg.models.Net]."
    )
    net = tiny_pkg["models.Net"].docstring.value
    assert "[`score()`][tinypkg.models.score]" in net
    assert "`_private()`" in net and "][tinypkg.models.Net._private]" not in net
    assert "`np.ndarray`" in net and "][numpy" not in net
    assert "$f(x)$" in net and "<sup>3</sup>" in net


def test_short_form_shows_the_last_component(tiny_pkg):
    text = tiny_pkg["models"].docstring.value
    assert "[`score()`][tinypkg.models.score]" in text


def test_a_tinypkg_path_that_names_nothing_is_a_warning(tmp_path, caplog):
    pkg = tmp_path / "tinypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""See :mod:`tinypkg.moved_away`."""\n')
    with caplog.at_level(logging.WARNING):
        module = griffe.load(
            "tinypkg",
            search_paths=[tmp_path],
            allow_inspection=False,
            extensions=griffe.load_extensions(
                _load_extension().SphinxRoles(package="tinypkg")
            ),
        )
    assert module.docstring.value == "See `tinypkg.moved_away`."
    assert any("tinypkg.moved_away" in record.getMessage() for record in caplog.records)


def test_several_parameters_on_one_line_become_one_entry_each(tiny_pkg):
    sections = tiny_pkg["models.score"].docstring.parse("google")
    (params,) = [s for s in sections if s.kind.value == "parameters"]
    assert [p.name for p in params.value] == ["a", "b"]
    assert all("same shape" in p.description for p in params.value)
