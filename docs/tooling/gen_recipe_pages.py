"""Generate the recipe reference, one page per recipe kind (mkdocs-gen-files).

Run by ``mkdocs build``/``serve`` (``gen-files: scripts`` in ``mkdocs.yml``):
``recipes/<kind>.md`` for every kind of :data:`kocc.experiments.recipes.KINDS`,
rendered by :func:`kocc.experiments.recipe_reference.render_page` from the one
recipe schema (keys, types, defaults, rules, ``#:`` comments, docstrings), and
``recipes/SUMMARY.md`` for ``literate-nav``.

Unlike the API reference (static analysis), this imports the schema: some kinds'
schemas live in driver modules, and importing ``kocc`` imports TensorFlow. That
costs the build a few seconds of start-up. TensorFlow's native start-up lines
are dropped as ``kocc``'s CLI drops them, and dependencies' deprecation warnings
(foolbox's scipy imports, ...) are not the docs' concern.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the kocc of this checkout, installed or not
    sys.path.insert(0, str(ROOT))

from kocc.experiments.quiet_tensorflow import quiet_tensorflow_import  # noqa: E402


def main() -> None:
    with quiet_tensorflow_import(verbose=False), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kocc.experiments.recipe_reference import kinds, render_page

        pages = {kind: render_page(kind) for kind in kinds()}
    nav = mkdocs_gen_files.Nav()
    for kind, text in pages.items():
        page = f"{kind}.md"
        nav[kind] = page
        with mkdocs_gen_files.open(f"recipes/{page}", "w") as stream:
            stream.write(text)
        mkdocs_gen_files.set_edit_path(f"recipes/{page}", "kocc/experiments/recipes.py")
    with mkdocs_gen_files.open("recipes/SUMMARY.md", "w") as stream:
        stream.writelines(nav.build_literate_nav())


main()
