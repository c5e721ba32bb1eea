"""Generate the API reference pages from the package tree (mkdocs-gen-files).

Run by ``mkdocs build``/``serve`` (plugin ``gen-files`` in ``mkdocs.yml``): one
page ``reference/<dotted/path>.md`` per public module of ``kocc`` holding the
mkdocstrings directive ``::: kocc.x.y``, and ``reference/SUMMARY.md``, the
navigation that ``literate-nav`` reads. Modules are found by walking ``kocc/``
at build time, so a module that is added or moved appears in the reference with
no edit here; a name starting with ``_`` is private and left out.

Pages generated from other sources go in their own script beside this one,
listed under ``gen-files: scripts`` in ``mkdocs.yml`` (``gen_recipe_pages.py``:
the recipe reference, one page per recipe kind, from the recipe schema).
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "kocc"


def public_modules(root: Path = ROOT, package: str = PACKAGE) -> list[tuple[str, ...]]:
    """Dotted parts of every public module and package under ``root/package``."""
    modules = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        modules.append(parts)
    return modules


def main() -> None:
    nav = mkdocs_gen_files.Nav()
    for parts in public_modules():
        page = Path(*parts) / "index.md" if _is_package(parts) else None
        page = page or Path(*parts).with_suffix(".md")
        nav[parts] = page.as_posix()
        with mkdocs_gen_files.open(Path("reference") / page, "w") as stream:
            stream.write(f"::: {'.'.join(parts)}\n")
        source = ROOT / Path(*parts)
        source = source / "__init__.py" if _is_package(parts) else source
        mkdocs_gen_files.set_edit_path(
            Path("reference") / page, source.with_suffix(".py").relative_to(ROOT)
        )
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as stream:
        stream.writelines(nav.build_literate_nav())


def _is_package(parts: tuple[str, ...]) -> bool:
    return (ROOT / Path(*parts) / "__init__.py").is_file()


main()
