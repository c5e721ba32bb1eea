"""Griffe extension: render the Sphinx roles of kocc's docstrings in mkdocstrings.

kocc's docstrings are Google style with Sphinx roles (``:class:`OCSDF```,
``:func:`~kocc.metrics.certified_auroc```, ``:math:`f(x)```). mkdocstrings'
Google parser leaves roles as literal text, so this extension rewrites them once
the whole package is loaded (static analysis: nothing is imported):

* ``:class:`` ``:func:`` ``:meth:`` ``:mod:`` ``:data:`` ``:attr:`` ``:exc:``
  ``:obj:`` become a cross-reference ``[`name`][kocc.full.path]`` when the target
  is an object of kocc. The target is looked up as written (``kocc.x.y``), then in
  the scope of the documented object (its module's names and imports, as Python
  would), then, for a short name, as the one object of kocc with that name. A
  ``~`` prefix shows the last component only, as in Sphinx.
* A target outside kocc (``tf.keras.Model``, ``sklearn....``) renders as code,
  without a link: no inventory of those sites is fetched at build time.
* A target written as a kocc path that does not exist (a module that moved, a
  renamed function) is a warning, so ``mkdocs build --strict`` names the stale
  reference instead of rendering it silently.
* ``:math:`x``` becomes ``$x$`` (pymdownx.arithmatex), ``:sup:`x``` ``<sup>x</sup>``.
* A target that is private (``Domain._sample``) renders as code: private
  objects are not in the reference.

It also expands Napoleon's several-parameters entry (``a, b: meshes.`` under
``Args:``), which griffe's Google parser reads as one parameter named ``a, b``,
into one entry per parameter with the same description.
"""

from __future__ import annotations

import re
from collections import defaultdict

import griffe

logger = griffe.get_logger("kocc.docs.sphinx_roles")

ROLE = re.compile(r":(?P<role>[a-z]+):`(?P<target>[^`]+)`")
XREF_ROLES = {"class", "func", "meth", "mod", "data", "attr", "exc", "obj"}
PACKAGE = "kocc"
ARGS_HEADER = re.compile(r"^(?P<indent>\s*)(Args|Arguments|Parameters|Attributes):\s*$")
SEVERAL_NAMES = re.compile(
    r"^(?P<indent>\s+)(?P<names>[*\w]+(?:\s*,\s*[*\w]+)+)(?P<rest>(\s*\([^)]*\))?:.*)$"
)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package (see module doc).

    Args:
        package: the package whose docstrings are rewritten.
    """

    def __init__(self, package: str = PACKAGE) -> None:
        super().__init__()
        self.package = package

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != self.package:
            return
        objects = list(_walk(pkg))
        by_name: dict[str, list[str]] = defaultdict(list)
        for obj in objects:
            by_name[obj.name].append(obj.path)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(
                    lambda match, obj=obj: _render(match, obj, pkg, by_name),
                    _split_several_names(obj.docstring.value),
                )


def _split_several_names(text: str) -> str:
    """``a, b: desc`` under an ``Args:`` header -> ``a: desc`` and ``b: desc``."""
    lines = text.splitlines()
    out: list[str] = []
    section_indent = None
    index = 0
    while index < len(lines):
        line = lines[index]
        header = ARGS_HEADER.match(line)
        if header:
            section_indent = len(header["indent"])
            out.append(line)
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        if line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None
        entry = SEVERAL_NAMES.match(line) if section_indent is not None else None
        if entry is None:
            out.append(line)
            index += 1
            continue
        block_end = index + 1
        while block_end < len(lines) and (
            not lines[block_end].strip()
            or len(lines[block_end]) - len(lines[block_end].lstrip()) > indent
        ):
            block_end += 1
        continuation = lines[index + 1 : block_end]
        for name in re.split(r"\s*,\s*", entry["names"]):
            out.append(f"{entry['indent']}{name}{entry['rest']}")
            out.extend(continuation)
        index = block_end
    return "\n".join(out)


def _walk(obj: griffe.Object):
    """Every object defined in the package (aliases, i.e. imports, skipped)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _exists(pkg: griffe.Module, path: str) -> bool:
    if path == pkg.path:
        return True
    if not path.startswith(pkg.path + "."):
        return False
    try:
        pkg[path[len(pkg.path) + 1 :]]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _resolve(target: str, obj: griffe.Object, pkg, by_name) -> str | None:
    """The full path of ``target`` inside kocc, or ``None`` (outside or unknown)."""
    if _exists(pkg, target):
        return target
    head, _, rest = target.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    try:
        base = scope.resolve(head)
    except griffe.NameResolutionError:
        base = None
    if base is not None:
        path = f"{base}.{rest}" if rest else base
        if _exists(pkg, path):
            return path
    candidates = by_name.get(target.rsplit(".", 1)[-1], [])
    if len(candidates) == 1 and candidates[0].endswith(target):
        return candidates[0]
    return None


def _is_private(path: str) -> bool:
    return any(
        part.startswith("_") and not part.endswith("__") for part in path.split(".")
    )


def _render(match: re.Match, obj: griffe.Object, pkg, by_name) -> str:
    role, target = match["role"], match["target"].strip()
    if role == "math":
        return f"${target}$"
    if role == "sup":
        return f"<sup>{target}</sup>"
    if role not in XREF_ROLES:
        return f"`{target}`"
    short = target.startswith("~")
    target = target.lstrip("~").removesuffix("()")
    shown = target.rsplit(".", 1)[-1] if short else target
    if role in ("func", "meth"):
        shown += "()"
    path = _resolve(target, obj, pkg, by_name)
    if path is not None and _is_private(path):
        return f"`{shown}`"
    if path is not None:
        return f"[`{shown}`][{path}]"
    if target == pkg.name or target.startswith(pkg.name + "."):
        logger.warning(
            "%s: :%s:`%s` names nothing in %s (moved or renamed?)",
            obj.path,
            role,
            target,
            pkg.name,
        )
    return f"`{shown}`"
